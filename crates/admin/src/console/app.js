// The Cascade web console: a client of this node's admin API. Everything shown
// is built with DOM calls and text nodes (never HTML from data), and every call
// carries the session's bearer token, so the API's roles and audit apply.

const TOKEN_KEY = "cascade.token";
const LANG_KEY = "cascade.lang";
const SAMPLES_KEY = "cascade.samples";
const SVG_NS = "http://www.w3.org/2000/svg";
// Monitoring keeps one sample every SAMPLE_MS, the newest MAX_SAMPLES (1 h).
const SAMPLE_MS = 5000;
const MAX_SAMPLES = 720;
// Hop latency looks back an hour, at the newest USAGE_SAMPLE calls (the API's page cap).
const HOUR_MS = 3600 * 1000;
const USAGE_SAMPLE = 1000;
// Catalog pages the console asks for: small enough to render at once.
const PAGE = 50;
// How often a running dataset fetch's progress is redrawn.
const FETCH_REFRESH_MS = 2000;

const TEXT = {
  zh: {
    signin: "登录", username: "用户名", password: "密码", or_token: "或使用令牌", token: "令牌",
    signout: "退出", federation: "联邦", catalog: "目录", services: "服务管理", sharing: "共享门户",
    base: "基础管理", monitoring: "监控", audit: "审计", this_node: "本节点", parent: "上级", children: "下级",
    link: "链路", state: "状态", lag: "滞后", connected: "已连接", down: "已断开", peers: "对等节点",
    revoked: "已吊销节点", revoke: "吊销", reason: "原因", none: "无", search: "搜索", text: "关键词",
    tier: "层级", origin: "来源节点", provider: "提供方", share_type: "共享类型", open_type: "开放类型",
    format: "格式", update_cycle: "更新周期", status: "状态", any: "全部", more: "加载更多",
    code: "资源代码", name: "名称", new_entry: "新建目录", edit: "编辑", publish: "发布", withdraw: "撤回",
    save: "保存", summary: "摘要", classification: "分类", share_mode: "共享方式", share_condition: "共享条件",
    not_shared_basis: "不予共享依据", open_condition: "开放条件", publish_date: "发布日期",
    related_codes: "关联资源代码", data_items: "信息项", data_type: "数据类型", length: "长度",
    add_item: "添加信息项", remove: "删除", scope: "范围", versions: "数据集版本", apply: "申请使用",
    consumer: "使用方", purpose: "用途", period_days: "期限（天）", submitted: "已提交", saved: "已保存",
    published: "已发布", withdrawn: "已撤回", draft: "草稿", all: "全部", register: "注册", retire: "停用",
    kind: "类型", sensitivity: "敏感级别", rate_limit: "每分钟限额", upstream: "上游地址", endpoints: "接口",
    entry: "目录条目", usage: "调用统计", outbox: "我的申请", inbox: "待我审批", held: "持有授权",
    issued: "已发授权", fetches: "数据集获取", approve: "批准", reject: "驳回", due: "办理时限",
    overdue: "已超期", working_days_left: "剩余工作日", grant: "授权", expires: "到期", valid: "有效",
    call: "调用", download: "下载", progress: "进度", divisions: "行政区划", organizations: "组织机构",
    accounts: "账号", tokens: "API 令牌", credit_code: "统一社会信用代码", division: "区划", roles: "角色",
    organization: "组织", create: "创建", disable: "停用", enable: "启用", label: "标签",
    new_token: "新令牌（只显示一次）", deltas_in: "收到的变更", deltas_out: "发出的变更",
    rejections: "拒收的变更", sync_lag: "同步滞后（秒）", gateway_calls: "网关调用", gateway_latency:
    "网关平均时延（毫秒）", overdue_apps: "超期申请", since_open: "自打开本页起每 5 秒采样",
    verify: "校验审计链", verified: "审计链完整", broken: "审计链断裂", actor: "操作者", time: "时间",
    detail: "详情", seq: "序号", since: "起", until: "止", filter: "筛选", fetch: "获取",
    loading: "加载中…", empty: "没有记录", error: "错误", forbidden: "无权访问", entries: "条",
    call_service: "调用服务", response: "响应", path: "路径", method: "方法", ok_done: "完成",
    nodes_id: "节点编号", revoke_node: "吊销节点", created: "已创建", resource: "申请对象", version: "版本",
    hop_latency: "每跳时延（毫秒）", hop_latency_title: "网关每跳时延：近一小时每分钟平均（本节点的调用记录）",
  },
  en: {
    signin: "Sign in", username: "Username", password: "Password", or_token: "Or use a token", token: "Token",
    signout: "Sign out", federation: "Federation", catalog: "Catalog", services: "Services",
    sharing: "Sharing portal", base: "Base management", monitoring: "Monitoring", audit: "Audit",
    this_node: "This node", parent: "Parent", children: "Children", link: "Link", state: "State", lag: "Lag",
    connected: "connected", down: "down", peers: "Peers", revoked: "Revoked nodes", revoke: "Revoke",
    reason: "Reason", none: "none", search: "Search", text: "Text", tier: "Tier", origin: "Origin",
    provider: "Provider", share_type: "Share type", open_type: "Open type", format: "Format",
    update_cycle: "Update cycle", status: "Status", any: "any", more: "Load more", code: "Code", name: "Name",
    new_entry: "New entry", edit: "Edit", publish: "Publish", withdraw: "Withdraw", save: "Save",
    summary: "Summary", classification: "Classification", share_mode: "Share mode",
    share_condition: "Share condition", not_shared_basis: "Basis for not sharing", open_condition:
    "Open condition", publish_date: "Publish date", related_codes: "Related codes", data_items: "Data items",
    data_type: "Data type", length: "Length", add_item: "Add item", remove: "Remove", scope: "Scope",
    versions: "Dataset versions", apply: "Apply", consumer: "Consumer", purpose: "Purpose",
    period_days: "Period (days)", submitted: "Submitted", saved: "Saved", published: "published",
    withdrawn: "withdrawn", draft: "draft", all: "all", register: "Register", retire: "Retire", kind: "Kind",
    sensitivity: "Sensitivity", rate_limit: "Calls a minute", upstream: "Upstream URL", endpoints: "Endpoints",
    entry: "Entry", usage: "Usage", outbox: "My applications", inbox: "To decide", held: "Grants held",
    issued: "Grants issued", fetches: "Dataset fetches", approve: "Approve", reject: "Reject", due: "Due",
    overdue: "overdue", working_days_left: "working days left", grant: "Grant", expires: "Expires",
    valid: "Valid", call: "Call", download: "Download", progress: "Progress", divisions: "Divisions",
    organizations: "Organizations", accounts: "Accounts", tokens: "API tokens", credit_code: "Credit code",
    division: "Division", roles: "Roles", organization: "Organization", create: "Create", disable: "Disable",
    enable: "Enable", label: "Label", new_token: "New token (shown once)", deltas_in: "Deltas received",
    deltas_out: "Deltas sent", rejections: "Deltas rejected", sync_lag: "Sync lag (s)",
    gateway_calls: "Gateway calls", gateway_latency: "Gateway mean latency (ms)",
    overdue_apps: "Overdue applications", since_open: "sampled every 5 s since this page opened",
    verify: "Verify the audit chain", verified: "audit chain intact", broken: "audit chain broken",
    actor: "Actor", time: "Time", detail: "Detail", seq: "Seq", since: "Since", until: "Until",
    filter: "Filter", fetch: "Fetch", loading: "Loading…", empty: "Nothing here", error: "Error",
    forbidden: "Not allowed", entries: "entries", call_service: "Call the service", response: "Response",
    path: "Path", method: "Method", ok_done: "done", nodes_id: "Node id", revoke_node: "Revoke a node",
    created: "Created", resource: "Resource", version: "Version",
    hop_latency: "Latency at this hop (ms)", hop_latency_title: "Gateway latency by hop: mean per minute over the last hour (this node's call records)",
  },
};

const ENUMS = {
  tier: ["national", "provincial", "municipal"],
  share_type: ["unconditional", "conditional", "not_shared"],
  share_mode: ["platform", "mail", "media"],
  open_type: ["open", "conditional", "closed"],
  format: ["electronic_file", "spreadsheet", "database", "image", "streaming_media", "self_describing",
    "service_interface"],
  update_cycle: ["realtime", "daily", "weekly", "monthly", "quarterly", "half_yearly", "yearly", "irregular"],
  data_type: ["C", "N", "Y", "D", "T", "L", "M", "G", "B", "I", "F"],
  roles: ["admin", "cataloger", "approver", "consumer", "auditor"],
};

let lang = localStorage.getItem(LANG_KEY) || "zh";
let me = null;
let node = null;
let sampler = null;

const t = (key) => TEXT[lang][key] ?? key;

// h("tag.class", {attr: value, onclick: fn}, child...) — children are nodes or text.
function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

const main = () => document.getElementById("main");
const show = (...nodes) => main().replaceChildren(...nodes);

function flash(message, bad = false) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = bad ? "bad" : "";
  el.hidden = !message;
}

class ApiFailure extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.field = body?.field;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = text; }
  if (response.status === 401 && path !== "/api/v1/login") {
    sessionStorage.removeItem(TOKEN_KEY);
    signInScreen();
    throw new ApiFailure(401, parsed);
  }
  if (!response.ok) throw new ApiFailure(response.status, parsed);
  return parsed;
}

const get = (path) => api("GET", path);
const post = (path, body) => api("POST", path, body);
const enc = encodeURIComponent;
const has = (...roles) => me && me.roles.some((r) => roles.includes(r));
const when = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : "—");
const whenMs = (ms) => (ms ? new Date(ms).toLocaleString() : "—");

// A table of `rows` with `columns` [[title, row => cell]], or "nothing here".
function table(columns, rows, rowClass = () => "") {
  if (!rows.length) return h("p.muted", {}, t("empty"));
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", {}, title)))),
    h("tbody", {}, rows.map((row) => h("tr", { class: rowClass(row) || undefined },
      columns.map(([, cell]) => h("td", {}, cell(row) ?? "—"))))));
}

function select(name, values, current, label = (v) => v, withAny = true) {
  return h("select", { name },
    withAny ? h("option", { value: "" }, t("any")) : null,
    values.map((v) => h("option", { value: v, selected: String(current ?? "") === String(v) }, label(v))));
}

function field(label, input, name) {
  return h("label", { "data-field": name }, h("span", {}, label), input);
}

// Shows an API error at the field it names (`data-field`), or at the top.
function showError(form, e) {
  form.querySelectorAll(".field-error").forEach((el) => el.remove());
  form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
  const at = e.field && form.querySelector(`[data-field="${CSS.escape(e.field)}"]`);
  if (at) {
    at.querySelector("input,select,textarea")?.classList.add("invalid");
    at.append(h("span.field-error", { role: "alert" }, e.message));
    at.scrollIntoView({ block: "center" });
    flash("");
  } else {
    flash(`${t("error")}: ${e.message}`, true);
  }
}

// Runs an action from a button or form, reporting failure.
async function attempt(action, form) {
  try {
    await action();
  } catch (e) {
    if (e.status === 401) return;
    if (form) showError(form, e); else flash(`${t("error")}: ${e.message}`, true);
  }
}

function values(form) {
  return Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, typeof v === "string" ? v.trim() : v]));
}

// ---- screens ----

function signInScreen() {
  stopSampling();
  me = null;
  renderChrome();
  const form = h("form.card.signin", { id: "signin" },
    h("h1", {}, t("signin")),
    field(t("username"), h("input", { name: "username", autocomplete: "username" }), "username"),
    field(t("password"), h("input", { name: "password", type: "password", autocomplete: "current-password" }),
      "password"),
    h("p", {}, h("button", { type: "submit" }, t("signin"))),
    h("details", {}, h("summary", {}, t("or_token")),
      field(t("token"), h("input", { name: "token", type: "password", autocomplete: "off" }), "token")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    attempt(async () => {
      const v = values(form);
      if (v.token) {
        sessionStorage.setItem(TOKEN_KEY, v.token);
      } else {
        const issued = await post("/api/v1/login", { username: v.username, password: v.password });
        sessionStorage.setItem(TOKEN_KEY, issued.token);
      }
      await start();
    }, form);
  });
  show(form);
}

async function federationScreen() {
  node = await get("/api/v1/node");
  const peer = (id) => node.peers.find((p) => p.id === id);
  const box = (id, role) => {
    // A neighbour without a live link is down, whether or not it is listed.
    const p = peer(id);
    const up = role === "self" || (p && p.state === "connected");
    const state = p ? p.state : "absent";
    return h("div", { class: `node${role === "self" ? " self" : ""}${up ? "" : " down"}`, "data-node": id },
      h("strong", {}, String(id)), h("div.muted", {}, role === "self" ? `${node.name} · ${node.tier}` : t(role)),
      role === "self" ? null : h("div", { class: `link ${up ? "up" : "down"}`, "data-link": state },
        `${up ? t("connected") : `${t("down")} (${state})`} · ${t("lag")} ${p ? p.lag_deltas : "?"} / ${p ? p.lag_seconds : "?"}s`));
  };
  const tree = h("div.tree", {},
    node.parent ? h("div.row", {}, box(node.parent, "parent")) : null,
    node.parent ? h("div.link", {}, "│") : null,
    h("div.row", {}, box(node.id, "self")),
    node.children.length ? h("div.link", {}, "│") : null,
    h("div.row", {}, node.children.map((c) => box(c, "children"))));
  const sections = [h("h1", {}, t("federation")), h("section", {}, tree),
    h("h2", {}, t("peers")),
    table([[t("nodes_id"), (p) => p.id], [t("link"), (p) => p.role], [t("state"), (p) => p.state],
      [t("lag"), (p) => `${p.lag_deltas} Δ · ${p.lag_seconds}s`], [t("time"), (p) => when(p.last_frame_at)]],
    node.peers),
    h("h2", {}, t("revoked")),
    node.revoked.length ? h("p", {}, node.revoked.join(", ")) : h("p.muted", {}, t("none")),
    h("dl.meta", {},
      h("dt", {}, t("deltas_in")), h("dd", {}, node.deltas.in),
      h("dt", {}, t("deltas_out")), h("dd", {}, node.deltas.out),
      h("dt", {}, t("rejections")), h("dd", {}, JSON.stringify(node.deltas.rejected)))];
  if (has("admin")) {
    const form = h("form.card", {},
      h("h2", {}, t("revoke_node")),
      field(t("nodes_id"), h("input", { name: "id", required: true }), "id"),
      field(t("reason"), h("input", { name: "reason", required: true }), "reason"),
      h("button", { type: "submit" }, t("revoke")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = values(form);
      attempt(async () => { await post(`/api/v1/nodes/${enc(v.id)}/revoke`, { reason: v.reason }); route(); }, form);
    });
    sections.push(form);
  }
  show(...sections);
}

async function catalogScreen(params) {
  const filters = ["q", "tier", "origin", "provider", "share_type", "open_type", "format", "update_cycle", "status"];
  const form = h("form.card.filters", { id: "catalog-filters" },
    field(t("text"), h("input", { name: "q", value: params.get("q") || "" }), "q"),
    ...["tier", "share_type", "open_type", "format", "update_cycle"].map((k) =>
      field(t(k), select(k, ENUMS[k], params.get(k)), k)),
    field(t("origin"), h("input", { name: "origin", size: 7, value: params.get("origin") || "" }), "origin"),
    field(t("provider"), h("input", { name: "provider", size: 18, value: params.get("provider") || "" }), "provider"),
    field(t("status"), select("status", ["published", "withdrawn", "draft", "all"], params.get("status") || "published",
      t, false), "status"),
    h("button", { type: "submit" }, t("search")),
    has("cataloger", "admin") ? h("button.plain", { type: "button", onclick: () => go("#/edit") }, t("new_entry")) : null);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams(Object.entries(values(form)).filter(([, v]) => v));
    go(`#/catalog?${q}`);
  });
  const body = h("tbody", {});
  const count = h("span.muted", {});
  const more = h("button.plain", { type: "button", hidden: true }, t("more"));
  let cursor = null;
  let shown = 0;
  const load = async () => {
    const q = new URLSearchParams();
    for (const k of filters) if (params.get(k)) q.set(k, params.get(k));
    q.set("limit", PAGE);
    if (cursor) q.set("cursor", cursor);
    const page = await get(`/api/v1/catalog?${q}`);
    for (const e of page.entries) {
      const link = `#/entry?origin=${e.origin}&code=${enc(e.code)}`;
      body.append(h("tr", { "data-code": e.code },
        h("td", {}, h("a", { href: link }, e.code)), h("td", {}, h("a", { href: link }, e.name)),
        h("td", {}, e.origin), h("td", {}, e.provider), h("td", {}, e.share_type), h("td", {}, e.open_type),
        h("td", {}, e.format), h("td", {}, e.update_cycle), h("td", {}, e.status)));
    }
    shown += page.entries.length;
    count.textContent = `${shown} ${t("entries")}`;
    cursor = page.next;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => attempt(load));
  const list = h("table", { id: "catalog-list" },
    h("thead", {}, h("tr", {}, ["code", "name", "origin", "provider", "share_type", "open_type", "format",
      "update_cycle", "status"].map((k) => h("th", {}, t(k))))), body);
  show(h("h1", {}, t("catalog")), form, count, list, h("p", {}, more));
  await load();
}

const ENTRY_FIELDS = ["code", "name", "classification", "provider", "summary", "format", "share_type",
  "share_condition", "not_shared_basis", "share_mode", "open_type", "open_condition", "update_cycle",
  "publish_date", "related_codes", "status", "scope", "version"];

async function entryScreen(params) {
  const origin = params.get("origin");
  const code = params.get("code");
  const row = await get(`/api/v1/catalog/${enc(code)}?origin=${enc(origin)}`);
  const own = String(row.origin) === String(node.id);
  const meta = h("dl.meta", {}, ENTRY_FIELDS.flatMap((k) => [h("dt", {}, t(k)),
    h("dd", { "data-key": k }, Array.isArray(row[k]) ? row[k].join(", ") || "—" : row[k] ?? "—")]));
  const items = table([[t("name"), (i) => i.name], [t("data_type"), (i) => i.data_type], [t("length"), (i) => i.length]],
    row.data_items || []);
  const sections = [h("h1", {}, `${row.name} `, h("span.muted", {}, `${row.origin} · ${row.code}`)), h("section", {}, meta),
    h("h2", {}, t("data_items")), items];
  if (own && has("cataloger", "admin")) {
    const scope = select("scope", ["federation", "province"], row.scope || "federation", (v) => v, false);
    sections.push(h("p", {},
      h("button.plain", { type: "button", onclick: () => go(`#/edit?code=${enc(code)}`) }, t("edit")), " ",
      row.status !== "published" ? h("span", {}, scope, " ", h("button", { type: "button", id: "publish",
        onclick: () => attempt(async () => {
          await post(`/api/v1/catalog/${enc(code)}/publish`, { scope: scope.value });
          flash(t("published")); route();
        }) }, t("publish"))) : null, " ",
      row.status === "published" ? h("button.plain", { type: "button", onclick: () => attempt(async () => {
        await post(`/api/v1/catalog/${enc(code)}/withdraw`); flash(t("withdrawn")); route();
      }) }, t("withdraw")) : null));
  }
  const listed = await get(`/api/v1/services?origin=${enc(origin)}&limit=1000`).catch(() => ({ services: [] }));
  const services = listed.services.filter((s) => s.entry && s.entry.code === code && String(s.entry.origin) === String(origin));
  sections.push(h("h2", {}, t("services")), table([["id", (s) => s.id], [t("name"), (s) => s.name],
    [t("kind"), (s) => s.kind], [t("sensitivity"), (s) => s.sensitivity], [t("status"), (s) => s.status],
    [t("endpoints"), (s) => s.endpoints.map((e) => `${e.method} /gateway/${s.id}${e.path}`).join("\n")]],
  services));
  const versions = await get(`/api/v1/datasets/${enc(origin)}/${enc(code)}/versions`).catch(() => null);
  if (versions) {
    sections.push(h("h2", {}, t("versions")), table([["#", (v) => v.version], ["bytes", (v) => v.size],
      [t("time"), (v) => whenMs(v.published_ms)],
      [t("fetch"), (v) => h("button.plain", { type: "button", onclick: () => attempt(async () => {
        await post(`/api/v1/datasets/${enc(origin)}/${enc(code)}/versions/${v.version}/fetch`);
        go("#/sharing?tab=fetches");
      }) }, t("fetch"))]], versions.versions || []));
  }
  if (row.status === "published" && has("consumer", "admin")) {
    const form = h("form.card", { id: "apply" }, h("h2", {}, t("apply")),
      field(t("resource"), select("resource", ["entry", ...services.filter((s) => s.status === "active").map((s) => s.id)],
        "entry", (v) => (v === "entry" ? `${t("entry")} ${code}` : `${t("services")} ${v}`), false), "resource"),
      field(t("consumer"), h("input", { name: "consumer", value: me.organization || "", required: true }), "consumer"),
      field(t("purpose"), h("input", { name: "purpose", required: true }), "purpose"),
      field(t("period_days"), h("input", { name: "period_days", type: "number", value: 30, min: 1 }), "period_days"),
      h("button", { type: "submit" }, t("apply")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = values(form);
      attempt(async () => {
        const resource = v.resource === "entry" ? { entry: { origin: Number(origin), code } } : { service: v.resource };
        await post("/api/v1/applications", { resource,
          consumer: v.consumer, purpose: v.purpose, period_days: Number(v.period_days) });
        flash(t("submitted"));
        go("#/sharing?tab=outbox");
      }, form);
    });
    sections.push(form);
  }
  show(...sections);
}

function itemRow(item, n) {
  return h("div.item", { "data-item": n },
    field(`${t("name")} ${n + 1}`, h("input", { name: "item_name", value: item.name || "" }), `data_items[${n}].name`),
    field(t("data_type"), select("item_type", ENUMS.data_type, item.data_type || "C", (v) => v, false),
      `data_items[${n}].data_type`),
    field(t("length"), h("input", { name: "item_length", type: "number", value: item.length ?? "" }),
      `data_items[${n}].length`));
}

async function editScreen(params) {
  const code = params.get("code");
  const row = code ? await get(`/api/v1/catalog/${enc(code)}?origin=${node.id}`) : {
    provider: me.organization || "", format: "database", share_type: "unconditional", share_mode: "platform",
    open_type: "closed", update_cycle: "daily", data_items: [{}] };
  const text = (k, attrs = {}) => field(t(k), h("input", { name: k, value: row[k] ?? "", ...attrs }), k);
  const choice = (k) => field(t(k), select(k, ENUMS[k], row[k], (v) => v, false), k);
  const items = h("div", { id: "items" }, (row.data_items || []).map(itemRow));
  const form = h("form.card", { id: "entry-form", novalidate: true },
    h("h1", {}, code ? `${t("edit")} ${code}` : t("new_entry")),
    text("name"), text("classification"), text("provider"),
    field(t("summary"), h("textarea", { name: "summary", rows: 3, cols: 60 }, row.summary || ""), "summary"),
    choice("format"), choice("share_type"), text("share_condition"), text("not_shared_basis"), choice("share_mode"),
    choice("open_type"), text("open_condition"), choice("update_cycle"), text("publish_date", { placeholder: "YYYY-MM-DD" }),
    text("related_codes", { value: (row.related_codes || []).join(", ") }),
    h("h2", { "data-field": "data_items" }, t("data_items")), items,
    h("p", {}, h("button.plain", { type: "button", onclick: () => items.append(itemRow({}, items.children.length)) },
      t("add_item"))),
    h("p", {}, h("button", { type: "submit" }, t("save"))));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = values(form);
    const optional = (k) => (v[k] ? v[k] : null);
    const draft = {
      name: v.name, classification: v.classification, provider: v.provider, summary: v.summary, format: v.format,
      share_type: v.share_type, share_condition: optional("share_condition"),
      not_shared_basis: optional("not_shared_basis"), share_mode: v.share_mode, open_type: v.open_type,
      open_condition: optional("open_condition"), update_cycle: v.update_cycle, publish_date: optional("publish_date"),
      related_codes: v.related_codes ? v.related_codes.split(",").map((c) => c.trim()).filter(Boolean) : [],
      data_items: [...items.children].map((el) => ({
        name: el.querySelector("[name=item_name]").value.trim(),
        data_type: el.querySelector("[name=item_type]").value,
        length: el.querySelector("[name=item_length]").value ? Number(el.querySelector("[name=item_length]").value) : null,
      })).filter((i) => i.name || i.length !== null),
    };
    if (code) draft.code = code;
    attempt(async () => {
      const saved = await post("/api/v1/catalog", draft);
      flash(t("saved"));
      go(`#/entry?origin=${node.id}&code=${enc(saved.code)}`);
    }, form);
  });
  show(form);
}

// A service's sensitivity level; its own node's catalogers reclassify it there.
function classify(service) {
  if (service.status !== "active" || String(service.origin) !== String(node.id) || !has("cataloger", "admin")) {
    return service.sensitivity;
  }
  const level = select("sensitivity", [1, 2, 3, 4], service.sensitivity, (v) => v, false);
  return h("span", { "data-classify": service.id }, level, " ", h("button.plain", { type: "button",
    onclick: () => attempt(async () => {
      // The update takes the whole registration, upstream included (shown here only).
      const { id, origin, version, status, ...draft } = await get(`/api/v1/services/${enc(service.id)}`);
      await api("PUT", `/api/v1/services/${enc(id)}`, { ...draft, sensitivity: Number(level.value) });
      flash(t("saved")); route();
    }) }, t("save")));
}

async function servicesScreen(params) {
  const status = params.get("status") || "active";
  const list = await get(`/api/v1/services?status=${enc(status)}&limit=200`);
  const sections = [h("h1", {}, t("services")),
    h("p.tabs", {}, ["active", "retired"].map((s) =>
      h("a", { href: `#/services?status=${s}`, class: s === status ? "on" : undefined }, s))),
    table([["id", (s) => s.id], [t("name"), (s) => s.name],
      [t("entry"), (s) => (s.entry ? h("a", { href: `#/entry?origin=${s.entry.origin}&code=${enc(s.entry.code)}` },
        `${s.entry.origin} ${s.entry.code}`) : "—")],
      [t("provider"), (s) => s.provider], [t("kind"), (s) => s.kind], [t("sensitivity"), classify],
      [t("rate_limit"), (s) => s.rate_limit_per_minute],
      [t("endpoints"), (s) => s.endpoints.map((e) => `${e.method} ${e.path}`).join("\n")],
      ["", (s) => (s.status === "active" && String(s.origin) === String(node.id) && has("cataloger", "admin")
        ? h("button.plain", { type: "button", onclick: () => attempt(async () => {
          await post(`/api/v1/services/${enc(s.id)}/retire`); route();
        }) }, t("retire")) : null)]], list.services)];
  if (has("cataloger", "admin")) {
    const form = h("form.card", { id: "service-form" }, h("h2", {}, t("register")),
      field(t("name"), h("input", { name: "name" }), "name"),
      field(`${t("entry")} (${t("code")})`, h("input", { name: "entry_code", placeholder: "3/000001" }), "entry"),
      field(t("provider"), h("input", { name: "provider", value: me.organization || "" }), "provider"),
      field(t("kind"), select("kind", ["query", "verify"], "query", (v) => v, false), "kind"),
      field(`${t("method")} / ${t("path")}`, h("span", {}, select("method", ["GET", "POST"], "GET", (v) => v, false),
        h("input", { name: "path", value: "/" })), "endpoints"),
      field(t("sensitivity"), select("sensitivity", [1, 2, 3, 4], 1, (v) => v, false), "sensitivity"),
      field(t("rate_limit"), h("input", { name: "rate_limit_per_minute", type: "number", value: 600 }),
        "rate_limit_per_minute"),
      field(t("upstream"), h("input", { name: "upstream", size: 40 }), "upstream"),
      h("button", { type: "submit" }, t("register")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = values(form);
      attempt(async () => {
        await post("/api/v1/services", { name: v.name, entry: { origin: node.id, code: v.entry_code },
          provider: v.provider, kind: v.kind, endpoints: [{ method: v.method, path: v.path }],
          sensitivity: Number(v.sensitivity), rate_limit_per_minute: Number(v.rate_limit_per_minute),
          upstream: v.upstream });
        flash(t("created")); route();
      }, form);
    });
    sections.push(form);
  }
  const usage = await get("/api/v1/usage").catch(() => null);
  if (usage) {
    sections.push(h("h2", {}, t("usage")), table(Object.keys(usage.usage[0] || {}).map((k) => [k, (u) =>
      (typeof u[k] === "object" ? JSON.stringify(u[k]) : u[k])]), usage.usage));
  }
  show(...sections);
}

const resourceOf = (r) => (r.entry ? `${r.entry.origin} ${r.entry.code}` : r.service ? `service ${r.service}` : JSON.stringify(r));

async function sharingScreen(params) {
  const tab = params.get("tab") || "outbox";
  const tabs = h("p.tabs", {}, ["outbox", "inbox", "held", "issued", "fetches"].map((k) =>
    h("a", { href: `#/sharing?tab=${k}`, class: k === tab ? "on" : undefined, "data-tab": k }, t(k))));
  let content;
  if (tab === "outbox" || tab === "inbox") {
    const page = await get(`/api/v1/applications?box=${tab}&limit=200`);
    const decide = (a) => (tab === "inbox" && a.state === "pending" && has("approver", "admin") ? h("span", {},
      h("button", { type: "button", "data-action": "approve", onclick: () => attempt(async () => {
        await post(`/api/v1/applications/${enc(a.id)}/approve`); route();
      }) }, t("approve")), " ",
      h("button.plain", { type: "button", onclick: () => attempt(async () => {
        const reason = prompt(t("reason"));
        if (reason) { await post(`/api/v1/applications/${enc(a.id)}/reject`, { reason }); route(); }
      }) }, t("reject"))) : tab === "outbox" && a.state === "pending" ? h("button.plain", { type: "button",
      onclick: () => attempt(async () => { await post(`/api/v1/applications/${enc(a.id)}/withdraw`); route(); }) },
    t("withdraw")) : null);
    content = table([["id", (a) => a.id], [t("entry"), (a) => resourceOf(a.resource)], [t("consumer"), (a) => a.consumer],
      [t("purpose"), (a) => a.purpose], [t("state"), (a) => h("span", { "data-state": a.state }, a.state)],
      [t("due"), (a) => (a.due_at ? h("span", {}, when(a.due_at), a.working_days_left === null ? null
        : h("span", { "data-days-left": a.working_days_left }, ` · ${a.working_days_left} ${t("working_days_left")}`)) : "—")],
      [t("overdue"), (a) => (a.overdue ? h("strong.bad", {}, t("overdue")) : "")],
      [t("grant"), (a) => a.grant], ["", decide]], page.applications, (a) => (a.overdue ? "overdue" : ""));
  } else if (tab === "held" || tab === "issued") {
    const page = await get(`/api/v1/grants?box=${tab}&limit=200`);
    content = table([["id", (g) => g.id], [t("entry"), (g) => resourceOf(g.resource)], [t("consumer"), (g) => g.grantee],
      [t("provider"), (g) => g.provider], [t("expires"), (g) => when(g.expires_at)],
      [t("valid"), (g) => (g.valid ? h("span.ok", { "data-valid": "true" }, "✓") : h("span.bad", {}, g.revoke_reason || "✗"))],
      ["", (g) => (tab === "issued" && g.valid && has("approver", "admin") ? h("button.plain", { type: "button",
        onclick: () => attempt(async () => {
          const reason = prompt(t("reason"));
          if (reason) { await post(`/api/v1/grants/${enc(g.id)}/revoke`, { reason }); route(); }
        }) }, t("revoke")) : null)]], page.grants);
    if (tab === "held") content = h("div", {}, content, callForm());
  } else {
    const page = await get("/api/v1/fetches");
    content = table([["id", (f) => f.id], [t("entry"), (f) => `${f.entry.origin} ${f.entry.code} v${f.version}`],
      [t("progress"), (f) => h("span", { "data-fetch": f.state }, h("progress", { max: f.bytes_total || 1,
        value: f.bytes_done }), ` ${f.bytes_done} / ${f.bytes_total} · ${f.state}${f.reason ? ` · ${f.reason}` : ""}`)],
      ["", (f) => (f.state === "done" ? h("button.plain", { type: "button",
        onclick: () => attempt(() => download(f)) }, t("download")) : null)]], page.fetches);
  }
  show(h("h1", {}, t("sharing")), tabs, content);
  // A running fetch's progress redraws until it ends or the screen changes.
  if (tab === "fetches" && content.querySelector('[data-fetch="running"]')) {
    const here = location.hash;
    setTimeout(() => { if (location.hash === here) route(); }, FETCH_REFRESH_MS);
  }
}

// Calls a granted service through this node's gateway and shows the answer.
function callForm() {
  const out = h("pre", { id: "call-result" });
  const form = h("form.card", { id: "call" }, h("h2", {}, t("call_service")),
    field("service", h("input", { name: "service", placeholder: "370100-4" }), "service"),
    field(t("path"), h("input", { name: "path", value: "/" }), "path"),
    h("button", { type: "submit" }, t("call")), out);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = values(form);
    attempt(async () => {
      const response = await fetch(`/gateway/${enc(v.service)}${v.path.startsWith("/") ? "" : "/"}${v.path}`, {
        headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
      out.textContent = `${response.status}\n${await response.text()}`;
    }, form);
  });
  return form;
}

async function download(f) {
  const { origin, code } = f.entry;
  const response = await fetch(`/api/v1/datasets/${enc(origin)}/${enc(code)}/versions/${f.version}/content`, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
  if (!response.ok) throw new ApiFailure(response.status, await response.json().catch(() => null));
  const url = URL.createObjectURL(await response.blob());
  h("a", { href: url, download: `${origin}-${code.replaceAll("/", "_")}-v${f.version}` }).click();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function baseScreen() {
  const divisions = await get("/api/v1/divisions");
  const orgs = await get("/api/v1/organizations?limit=200");
  const sections = [h("h1", {}, t("base")), h("h2", {}, t("divisions")),
    table([[t("code"), (d) => d.code], [t("name"), (d) => d.name], [t("tier"), (d) => d.tier]],
      [divisions.division, ...divisions.subtree].filter(Boolean)),
    h("h2", {}, t("organizations")),
    table([[t("credit_code"), (o) => o.organization.credit_code], [t("name"), (o) => o.organization.name],
      [t("division"), (o) => o.organization.division], [t("origin"), (o) => o.origin]], orgs.organizations)];
  if (has("admin")) {
    const org = h("form.card", { id: "org-form" }, h("h2", {}, `${t("register")} ${t("organization")}`),
      field(t("credit_code"), h("input", { name: "credit_code", size: 20 }), "credit_code"),
      field(t("name"), h("input", { name: "name" }), "name"),
      field(t("division"), h("input", { name: "division", value: node.id }), "division"),
      h("button", { type: "submit" }, t("register")));
    org.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = values(org);
      attempt(async () => {
        await post("/api/v1/organizations", { credit_code: v.credit_code, name: v.name, division: Number(v.division) });
        route();
      }, org);
    });
    const accounts = await get("/api/v1/accounts?limit=200");
    const account = h("form.card", { id: "account-form" }, h("h2", {}, `${t("create")} ${t("accounts")}`),
      field(t("username"), h("input", { name: "username" }), "username"),
      field(t("password"), h("input", { name: "password", type: "password", autocomplete: "new-password" }), "password"),
      field(t("organization"), h("input", { name: "organization", size: 20 }), "organization"),
      field(t("roles"), h("select", { name: "roles", multiple: true }, ENUMS.roles.map((r) => h("option", { value: r }, r))),
        "roles"),
      h("button", { type: "submit" }, t("create")));
    account.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = values(account);
      const roles = [...account.querySelector("[name=roles]").selectedOptions].map((o) => o.value);
      attempt(async () => {
        await post("/api/v1/accounts", { username: v.username, password: v.password, organization: v.organization, roles });
        route();
      }, account);
    });
    sections.push(org, h("h2", {}, t("accounts")), table([[t("username"), (a) => a.username],
      [t("organization"), (a) => a.organization], [t("roles"), (a) => a.roles.join(", ")],
      [t("status"), (a) => (a.disabled ? t("disable") : "✓")],
      ["", (a) => h("button.plain", { type: "button", onclick: () => attempt(async () => {
        await post(`/api/v1/accounts/${enc(a.username)}/${a.disabled ? "enable" : "disable"}`); route();
      }) }, a.disabled ? t("enable") : t("disable"))]], accounts.accounts), account);
  }
  const tokens = await get("/api/v1/tokens?limit=200");
  const token = h("form.card", { id: "token-form" }, h("h2", {}, `${t("create")} ${t("tokens")}`),
    field(t("label"), h("input", { name: "label" }), "label"), h("button", { type: "submit" }, t("create")));
  token.addEventListener("submit", (ev) => {
    ev.preventDefault();
    attempt(async () => {
      const made = await post("/api/v1/tokens", { label: values(token).label });
      token.append(h("p", {}, `${t("new_token")}: `, h("code", {}, made.token)));
    }, token);
  });
  sections.push(h("h2", {}, t("tokens")), table([["id", (k) => k.id], [t("label"), (k) => k.label],
    [t("username"), (k) => k.username], [t("expires"), (k) => when(k.expires_at)],
    ["", (k) => (k.revoked ? t("revoked") : h("button.plain", { type: "button", onclick: () => attempt(async () => {
      await api("DELETE", `/api/v1/tokens/${enc(k.id)}`); route();
    }) }, t("revoke")))]], tokens.tokens), token);
  show(...sections);
}

// ---- monitoring: samples of /metrics, kept for the tab's life ----

function parseMetrics(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-z_]+)(\{[^}]*\})?\s+(\S+)/);
    if (!m) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    const labels = m[2] || "";
    const key = m[1].startsWith("cascade_http_request_duration_seconds") && labels.includes("/gateway/")
      ? `gateway_${m[1]}` : m[1];
    if (m[1].endsWith("_bucket")) continue;
    sums[key] = (sums[key] || 0) + value;
  }
  return sums;
}

async function sample() {
  const response = await fetch("/metrics", { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
  if (!response.ok) return;
  const m = parseMetrics(await response.text());
  const samples = JSON.parse(sessionStorage.getItem(SAMPLES_KEY) || "[]");
  samples.push({ at: Date.now(), m });
  sessionStorage.setItem(SAMPLES_KEY, JSON.stringify(samples.slice(-MAX_SAMPLES)));
}

function stopSampling() {
  if (sampler) clearInterval(sampler);
  sampler = null;
}

// A series from the samples: a gauge as is, a counter as its rate a second.
function series(samples, value, counter) {
  const out = [];
  for (let i = counter ? 1 : 0; i < samples.length; i++) {
    const v = value(samples[i].m);
    if (!counter) { out.push(v); continue; }
    const dt = (samples[i].at - samples[i - 1].at) / 1000;
    out.push(dt > 0 ? Math.max(0, (v - value(samples[i - 1].m)) / dt) : 0);
  }
  return out;
}

function chart(title, points) {
  const max = Math.max(1e-9, ...points);
  const width = 300;
  const line = points.map((v, i) => `${(i / Math.max(1, points.length - 1)) * width},${100 - (v / max) * 95}`).join(" ");
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} 100`);
  svg.setAttribute("preserveAspectRatio", "none");
  const poly = document.createElementNS(SVG_NS, "polyline");
  poly.setAttribute("points", line);
  svg.append(poly);
  const last = points.length ? points[points.length - 1] : 0;
  return h("div.chart.card", { "data-chart": title }, h("strong", {}, title), " ",
    h("span.muted", {}, `${last.toFixed(2)} (max ${max.toFixed(2)})`), svg);
}

// Per hop (this node as consumer, relay or provider of a call), the mean time a
// call spent from reaching this node to its answer's last byte leaving it, by
// minute over the last hour: from the node's own usage records, so the history
// is there when the page opens.
async function hopLatency() {
  const start = Date.now() - HOUR_MS;
  const page = await get(`/api/v1/usage?since=${start}&limit=${USAGE_SAMPLE}`).catch(() => ({ usage: [] }));
  const byRole = {};
  for (const u of page.usage) {
    const minute = Math.floor((u.request_in_ms - start) / 60000);
    if (!u.response_out_ms || minute < 0 || minute >= 60) continue;
    const buckets = (byRole[u.role] ??= Array.from({ length: 60 }, () => [0, 0]));
    buckets[minute][0] += u.response_out_ms - u.request_in_ms;
    buckets[minute][1] += 1;
  }
  return Object.entries(byRole).sort().map(([role, buckets]) =>
    chart(`${t("hop_latency")} · ${role}`, buckets.map(([sum, n]) => (n ? sum / n : 0))));
}

async function monitoringScreen() {
  const draw = async () => {
    if (!location.hash.startsWith("#/monitoring")) { stopSampling(); return; }
    const s = JSON.parse(sessionStorage.getItem(SAMPLES_KEY) || "[]");
    const v = (k) => (m) => m[k] || 0;
    const seconds = series(s, v("gateway_cascade_http_request_duration_seconds_sum"), true);
    const calls = series(s, v("gateway_cascade_http_request_duration_seconds_count"), true);
    const latency = seconds.map((sum, i) => (calls[i] > 0 ? (sum / calls[i]) * 1000 : 0));
    const hops = await hopLatency();
    if (!location.hash.startsWith("#/monitoring")) return;
    show(h("h1", {}, t("monitoring")), h("p.muted", {}, t("since_open")), h("div.grid", {},
      chart(`${t("deltas_in")} /s`, series(s, v("cascade_deltas_in_total"), true)),
      chart(`${t("deltas_out")} /s`, series(s, v("cascade_deltas_out_total"), true)),
      chart(`${t("rejections")} /s`, series(s, v("cascade_deltas_rejected_total"), true)),
      chart(t("sync_lag"), series(s, v("cascade_sync_lag_seconds"), false)),
      chart(`${t("gateway_calls")} /s`, series(s, v("gateway_cascade_http_request_duration_seconds_count"), true)),
      chart(t("gateway_latency"), latency),
      chart(t("overdue_apps"), series(s, v("cascade_applications_overdue"), false))),
    h("h2", {}, t("hop_latency_title")), h("div.grid", {}, hops.length ? hops : h("p.muted", {}, t("empty"))));
  };
  await sample();
  stopSampling();
  sampler = setInterval(() => attempt(async () => { await sample(); await draw(); }), SAMPLE_MS);
  await draw();
}

async function auditScreen(params) {
  const form = h("form.card.filters", { id: "audit-filters" },
    field(t("since"), h("input", { name: "since", type: "datetime-local", value: params.get("since") || "" }), "since_ms"),
    field(t("until"), h("input", { name: "until", type: "datetime-local", value: params.get("until") || "" }), "until_ms"),
    field(t("actor"), h("input", { name: "actor", value: params.get("actor") || "" }), "actor"),
    field(t("organization"), h("input", { name: "org", value: params.get("org") || "" }), "org"),
    field(t("kind"), h("input", { name: "kind", placeholder: "catalog.", value: params.get("kind") || "" }), "kind"),
    h("button", { type: "submit" }, t("filter")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go(`#/audit?${new URLSearchParams(Object.entries(values(form)).filter(([, v]) => v))}`);
  });
  const q = new URLSearchParams({ limit: 200 });
  for (const k of ["actor", "org", "kind"]) if (params.get(k)) q.set(k, params.get(k));
  if (params.get("since")) q.set("since_ms", new Date(params.get("since")).getTime());
  if (params.get("until")) q.set("until_ms", new Date(params.get("until")).getTime());
  const [page, check] = await Promise.all([get(`/api/v1/audit?${q}`), get("/api/v1/audit/verify")]);
  const verdict = check.ok ? h("p.ok", { id: "audit-verdict" }, `✓ ${t("verified")} (${check.records})`)
    : h("p.bad", { id: "audit-verdict" }, `✗ ${t("broken")}: ${check.first_break} ${check.reason || ""}`);
  show(h("h1", {}, t("audit")), verdict, form, table([[t("seq"), (r) => r.seq], [t("time"), (r) => whenMs(r.at_ms)],
    [t("actor"), (r) => r.actor], [t("organization"), (r) => r.org], [t("kind"), (r) => r.kind],
    [t("detail"), (r) => r.detail]], [...page.records].reverse()));
}

// ---- chrome and routing ----

const SCREENS = {
  federation: { run: federationScreen },
  catalog: { run: catalogScreen },
  entry: { run: entryScreen, nav: "catalog" },
  edit: { run: editScreen, nav: "catalog" },
  services: { run: servicesScreen },
  sharing: { run: sharingScreen },
  base: { run: baseScreen },
  monitoring: { run: monitoringScreen, roles: ["admin", "auditor"] },
  audit: { run: auditScreen, roles: ["admin", "auditor"] },
};

function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

function renderChrome(current) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.getElementById("lang").textContent = lang === "zh" ? "English" : "中文";
  const out = document.getElementById("signout");
  out.textContent = t("signout");
  out.hidden = !me;
  document.getElementById("who").textContent = me ? `${me.username || me.actor} · ${me.roles.join(", ")}` : "";
  document.getElementById("where").textContent = node ? `${node.name} ${node.id} · ${node.tier}` : "";
  const nav = document.getElementById("nav");
  nav.replaceChildren(...(me ? Object.entries(SCREENS)
    .filter(([name, s]) => !s.nav && (!s.roles || has(...s.roles)))
    .map(([name]) => h("a", { href: `#/${name}`, class: name === current ? "on" : undefined }, t(name))) : []));
}

async function route() {
  if (!me) return;
  const [path, query] = location.hash.replace(/^#\//, "").split("?");
  const name = SCREENS[path] ? path : "federation";
  const screen = SCREENS[name];
  if (name !== "monitoring") stopSampling();
  renderChrome(screen.nav || name);
  if (screen.roles && !has(...screen.roles)) { show(h("p.bad", {}, t("forbidden"))); return; }
  show(h("p.muted", {}, t("loading")));
  await attempt(() => screen.run(new URLSearchParams(query || "")));
}

async function start() {
  me = await get("/api/v1/whoami");
  node = await get("/api/v1/node");
  flash("");
  if (!location.hash) location.hash = "#/federation"; else route();
}

window.addEventListener("hashchange", route);
document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem(LANG_KEY, lang);
  if (me) route(); else signInScreen();
});
document.getElementById("signout").addEventListener("click", async () => {
  await post("/api/v1/logout").catch(() => null);
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(SAMPLES_KEY);
  signInScreen();
});

if (sessionStorage.getItem(TOKEN_KEY)) start().catch(() => signInScreen()); else signInScreen();
