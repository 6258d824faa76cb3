"""Label descriptions and a small HAND-WRITTEN evaluation set for the topic classifier.

No labelled topic corpus that ships its data (rather than downloading it) was found among the
packages installable offline, so the classifier is zero-shot: each label's head weights are
the normalised mean embedding of its descriptions below. The evaluation sentences were written
for this project as news-style headlines, are disjoint from the descriptions, and are a last
resort: they measure that the head works, not how it would score on a public benchmark.
"""

from __future__ import annotations

LABELS: tuple[str, ...] = (
    "business",
    "entertainment",
    "health",
    "politics",
    "science",
    "sports",
    "technology",
)

DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "business": (
        "business news about companies, markets and the economy",
        "stock markets, earnings, mergers and acquisitions",
        "banks, interest rates, inflation and trade",
        "a company reported its quarterly profit and revenue",
    ),
    "entertainment": (
        "entertainment news about films, music, television and celebrities",
        "a new movie, album, concert or streaming series",
        "actors, singers, awards shows and box office results",
        "arts, culture, books and theatre",
    ),
    "health": (
        "health and medicine news about diseases, treatments and hospitals",
        "doctors, patients, vaccines, drugs and clinical trials",
        "nutrition, fitness, mental health and wellbeing",
        "a public health outbreak of a virus",
    ),
    "politics": (
        "politics news about governments, elections and laws",
        "parliament, congress, presidents, ministers and political parties",
        "a vote, a campaign, legislation or a diplomatic summit",
        "policy debates, courts and international relations",
    ),
    "science": (
        "science news about research, discoveries and experiments",
        "physics, chemistry, biology, astronomy and space exploration",
        "scientists published a study about nature, climate or fossils",
        "a telescope, a planet, a species or a particle",
    ),
    "sports": (
        "sports news about games, matches, teams and athletes",
        "football, basketball, tennis, cricket, cycling and the Olympics",
        "a player scored, a team won the championship or the league",
        "coaches, transfers, tournaments and records",
    ),
    "technology": (
        "technology news about software, computers, the internet and gadgets",
        "smartphones, artificial intelligence, apps and cybersecurity",
        "a tech company launched a new device, chip or cloud service",
        "programming, data, robots and electric cars",
    ),
}

# (text, label): written by hand for this project; see the module docstring.
EVALUATION: tuple[tuple[str, str], ...] = (
    ("Shares of the retailer fell 8% after it cut its annual sales forecast.", "business"),
    ("The central bank left interest rates unchanged for a third month.", "business"),
    ("Two airlines agreed to merge in a deal worth $4 billion.", "business"),
    ("Oil prices climbed as producers announced deeper output cuts.", "business"),
    ("The startup raised $50 million from venture investors to expand in Europe.", "business"),
    ("Unemployment dipped to 3.9% as employers added jobs in retail.", "business"),
    ("The carmaker's quarterly profit beat analysts' expectations.", "business"),
    ("Consumer spending slowed in the holiday season, a survey showed.", "business"),
    ("The sequel topped the weekend box office with $90 million.", "entertainment"),
    ("The band announced a world tour to celebrate their new album.", "entertainment"),
    ("She won the award for best actress at last night's ceremony.", "entertainment"),
    ("The streaming service renewed the comedy series for a fourth season.", "entertainment"),
    ("A new production of the musical opens on Broadway next spring.", "entertainment"),
    ("The rapper's single went straight to number one in the charts.", "entertainment"),
    ("Critics praised the director's latest film at the festival.", "entertainment"),
    ("The novelist's memoir is being adapted into a television drama.", "entertainment"),
    ("A daily walk lowers the risk of heart disease, researchers say.", "health"),
    ("The hospital reported a rise in flu cases among children.", "health"),
    ("Regulators approved a new drug to treat type 2 diabetes.", "health"),
    ("Health officials urged older adults to get their booster shot.", "health"),
    ("Sleeping less than six hours a night is linked to poorer memory.", "health"),
    ("Doctors warn that measles outbreaks are spreading in schools.", "health"),
    ("A trial found the therapy eased symptoms of depression.", "health"),
    ("Cutting sugar from your diet can improve blood pressure.", "health"),
    ("The senate passed the budget bill after a late-night vote.", "politics"),
    ("The prime minister called an early general election.", "politics"),
    ("Opposition leaders criticised the government's immigration plan.", "politics"),
    ("The president vetoed the bill and sent it back to congress.", "politics"),
    ("Voters head to the polls on Sunday in the regional election.", "politics"),
    ("Foreign ministers met to discuss sanctions at the summit.", "politics"),
    ("The governor signed a law raising the minimum wage.", "politics"),
    ("The party chose a new leader after the defeat.", "politics"),
    ("Astronomers spotted water vapour in the atmosphere of a distant planet.", "science"),
    ("Fossils show that the dinosaur had feathers, a study found.", "science"),
    ("Physicists measured the mass of the particle with record precision.", "science"),
    ("The probe sent back images of the moon's south pole.", "science"),
    ("Biologists discovered a new species of frog in the rainforest.", "science"),
    ("Ice cores reveal how the climate changed 800,000 years ago.", "science"),
    ("The experiment confirmed a prediction of quantum theory.", "science"),
    ("Researchers mapped the genome of the ancient wheat plant.", "science"),
    ("The striker scored twice as the home side won 3-1.", "sports"),
    ("She won her first Grand Slam title in straight sets.", "sports"),
    ("The team clinched the championship with a game to spare.", "sports"),
    ("The coach was sacked after five straight defeats.", "sports"),
    ("He broke the world record in the 100 metres final.", "sports"),
    ("The cyclist took the yellow jersey on the mountain stage.", "sports"),
    ("The club signed the midfielder on a four-year contract.", "sports"),
    ("The quarterback threw three touchdowns in the win.", "sports"),
    ("The company unveiled a smartphone with a foldable screen.", "technology"),
    ("Hackers stole customer data in a breach of the retailer's servers.", "technology"),
    ("The chipmaker announced a faster processor for laptops.", "technology"),
    ("A software update fixes a bug that drained the battery.", "technology"),
    ("The app now uses artificial intelligence to summarise emails.", "technology"),
    ("The social network will require two-factor login for all users.", "technology"),
    ("Engineers built a robot that can sort recycling.", "technology"),
    ("The cloud provider suffered an outage that took websites offline.", "technology"),
)
