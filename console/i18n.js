// UI text in English and Chinese. Data from the API (tenant names, labels, file names) is never
// looked up here and never parsed as HTML: it is always set with textContent.
const TEXT = {
  en: {
    skip: "Skip to content", signout: "Sign out",
    "nav.usage": "Usage", "nav.invoices": "Invoices", "nav.keys": "Keys",
    "nav.playground": "Playground", "nav.models": "Models",
    "signin.title": "Sign in", "signin.key": "API key", "signin.submit": "Sign in",
    "signin.help": "Paste an API key. It stays in this browser tab only and is sent to the API in a header.",
    "signin.bad": "That key was not accepted.",
    "usage.title": "Usage", "usage.month": "Month", "usage.plan": "Plan", "usage.limit": "Hard monthly limit",
    "usage.used": "Used this month", "usage.daily": "Calls per day", "usage.bymodel": "By model and task",
    "usage.total": "Total", "col.day": "Day", "col.model": "Model", "col.task": "Task", "col.calls": "Calls",
    "col.units": "Units", "col.cost": "Cost", "col.unit": "Unit", "col.quantity": "Quantity",
    "col.unit_price": "Unit price", "col.amount": "Amount", "col.key": "Key", "col.label": "Label",
    "col.status": "Status", "col.created": "Created", "col.last_used": "Last used", "col.actions": "Actions",
    "col.when": "When", "col.action": "Action", "col.target": "Target", "col.actor": "Actor",
    "col.name": "Name", "col.labels": "Labels", "col.price": "Price", "col.accuracy": "Accuracy",
    "col.parity": "ONNX parity", "models.passed": "passed", "models.failed": "failed", "models.vs": "vs",
    "col.schema": "Input", "usage.none": "No usage in this period.",
    "inv.title": "Invoices", "inv.view": "Show", "inv.csv": "Download CSV", "inv.json": "Download JSON",
    "inv.due": "Amount due", "inv.print": "Print",
    "keys.title": "API keys", "keys.create": "Create key", "keys.label": "Label", "keys.revoke": "Revoke",
    "keys.rotate": "Rotate", "keys.secret": "Your new key. Copy it now: it is shown only once.",
    "keys.noself": "Your plan does not include self-service keys; ask your operator.",
    "keys.audit": "Audit log", "keys.current": "(this session)", "keys.confirm": "Revoke key {id}?",
    "pg.title": "Playground", "pg.text": "Text classification", "pg.embed": "Embeddings",
    "pg.image": "Image classification", "pg.input": "Text", "pg.labels": "Candidate labels (comma-separated, optional)",
    "pg.run": "Run", "pg.a": "First text", "pg.b": "Second text", "pg.similarity": "Cosine similarity",
    "pg.file": "Image (JPEG or PNG)", "pg.code": "The same call", "pg.cost": "Billed",
    "pg.audio": "Speech recognition", "pg.audiofile": "Audio file (WAV, MP3, FLAC, OGG, M4A, WebM)",
    "pg.record": "Record", "pg.stop": "Stop", "pg.recording": "Recording…", "pg.recorded": "Recorded",
    "pg.nomic": "No microphone could be used", "pg.transcript": "Transcript",
    "models.title": "Models", "error": "Error",
  },
  zh: {
    skip: "跳到内容", signout: "退出",
    "nav.usage": "用量", "nav.invoices": "账单", "nav.keys": "密钥", "nav.playground": "试用", "nav.models": "模型",
    "signin.title": "登录", "signin.key": "API 密钥", "signin.submit": "登录",
    "signin.help": "粘贴 API 密钥。它只保存在此浏览器标签页中，并通过请求头发送给 API。",
    "signin.bad": "密钥未被接受。",
    "usage.title": "用量", "usage.month": "月份", "usage.plan": "套餐", "usage.limit": "每月硬上限",
    "usage.used": "本月已用", "usage.daily": "每日调用", "usage.bymodel": "按模型和任务",
    "usage.total": "合计", "col.day": "日期", "col.model": "模型", "col.task": "任务", "col.calls": "调用",
    "col.units": "用量单位数", "col.cost": "费用", "col.unit": "单位", "col.quantity": "数量",
    "col.unit_price": "单价", "col.amount": "金额", "col.key": "密钥", "col.label": "名称",
    "col.status": "状态", "col.created": "创建时间", "col.last_used": "最近使用", "col.actions": "操作",
    "col.when": "时间", "col.action": "操作", "col.target": "对象", "col.actor": "执行者",
    "col.name": "名称", "col.labels": "标签", "col.price": "价格", "col.accuracy": "准确率",
    "col.parity": "ONNX 一致性", "models.passed": "通过", "models.failed": "未通过", "models.vs": "对比",
    "col.schema": "输入", "usage.none": "此期间没有用量。",
    "inv.title": "账单", "inv.view": "查看", "inv.csv": "下载 CSV", "inv.json": "下载 JSON",
    "inv.due": "应付金额", "inv.print": "打印",
    "keys.title": "API 密钥", "keys.create": "创建密钥", "keys.label": "名称", "keys.revoke": "吊销",
    "keys.rotate": "轮换", "keys.secret": "新密钥。请立即复制：它只显示这一次。",
    "keys.noself": "您的套餐不支持自助管理密钥，请联系管理员。",
    "keys.audit": "审计日志", "keys.current": "（当前会话）", "keys.confirm": "吊销密钥 {id}？",
    "pg.title": "试用", "pg.text": "文本分类", "pg.embed": "向量嵌入", "pg.image": "图像分类",
    "pg.input": "文本", "pg.labels": "候选标签（逗号分隔，可选）", "pg.run": "运行", "pg.a": "第一段文本",
    "pg.b": "第二段文本", "pg.similarity": "余弦相似度", "pg.file": "图片（JPEG 或 PNG）",
    "pg.code": "同样的调用", "pg.cost": "计费", "models.title": "模型", "error": "错误",
    "pg.audio": "语音识别", "pg.audiofile": "音频文件（WAV、MP3、FLAC、OGG、M4A、WebM）",
    "pg.record": "录音", "pg.stop": "停止", "pg.recording": "正在录音…", "pg.recorded": "已录音",
    "pg.nomic": "无法使用麦克风", "pg.transcript": "转写结果",
  },
};

const STORE = "aimaas.lang"; // a UI preference only; the key is never in localStorage

export function language() {
  const chosen = localStorage.getItem(STORE);
  if (chosen && TEXT[chosen]) return chosen;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function setLanguage(lang) {
  localStorage.setItem(STORE, lang);
}

export function t(id, values = {}) {
  const text = TEXT[language()][id] ?? TEXT.en[id] ?? id;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

export function locale() {
  return language() === "zh" ? "zh-CN" : navigator.language || "en";
}

export function translate(root = document) {
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
}
