// The live monitoring dashboard: reads the API's JSON endpoints with a viewer token kept in
// sessionStorage (never in a URL), and re-reads what is shown whenever /v1/stream says a total
// changed. No framework, no build step: the page must keep working on a wall screen for months.
"use strict";

const TOKEN_KEY = "campaign-tracker.token";
const LANG_KEY = "campaign-tracker.lang";
const TZ_OFFSET_MS = 7 * 3600 * 1000; // Asia/Ho_Chi_Minh has no daylight saving time
const CHART_DAYS = 30;
// Every event moves at least one of these province totals, so watching them is enough to know
// when to re-read the page's figures (one stream per page, whatever the page shows).
const BASE_WATCH = [
  "eid.activated", "cccd.issued", "sim.registered", "smartphone.replaced", "filing.submitted",
  "filing.processed", "payment.nvtc.count", "payment.fee.count", "payment.failed.count",
];

const T = {
  vi: {
    title: "Bảng điều hành chuyển đổi số", skip: "Bỏ qua đến nội dung", campaign: "Chiến dịch",
    date: "Ngày", logout: "Đăng xuất", login_title: "Đăng nhập", login: "Đăng nhập",
    login_help: "Nhập mã truy cập (token người xem) do quản trị viên cấp.", token: "Mã truy cập",
    bad_token: "Mã truy cập không hợp lệ hoặc đã bị thu hồi.", metric: "Chỉ tiêu",
    live: "Trực tiếp", connecting: "Đang kết nối…", lost: "Mất kết nối",
    lost_long: "Mất kết nối tới máy chủ — đang thử kết nối lại. Số liệu có thể đã cũ.",
    as_of: "số liệu đến", no_data: "chưa có", units: "Đơn vị",
    progress_of: "Tiến độ", children_of: "Các đơn vị trực thuộc — xếp theo tiến độ",
    unit: "Đơn vị", status: "Trạng thái", expected: "Dự kiến đến hôm nay",
    needed: "Cần mỗi ngày", last7: "7 ngày qua", per_day: "/ngày", projected: "Dự kiến hoàn thành",
    done: "Hoàn thành", on_track: "Đúng tiến độ", lagging: "Chậm tiến độ", no_target: "Chưa giao chỉ tiêu",
    lagging_mark: "Chậm", chart: "Số lượng theo ngày", daily: "Số lượng mỗi ngày",
    pace: "Cần mỗi ngày để hoàn thành đúng hạn", rankings: "Xếp hạng huyện, thị xã, thành phố",
    rank: "Hạng", value: "Giá trị", year: "năm", no_rows: "Không có số liệu",
    payments: "Kết quả thanh toán trực tuyến", day_of: "Ngày", month_of: "Tháng", year_of: "Năm",
    nvtc: "NVTC", fee: "Phí, lệ phí", count: "Số GD", amount: "Số tiền", total: "Tổng",
    grand: "Tổng thuế và phí, lệ phí", grand_count: "Tổng số GD", grand_amount: "Tổng số tiền",
    online: "Dịch vụ công trực tuyến (từ đầu năm)", online_share: "Tỷ lệ DVCTT phát sinh hồ sơ trực tuyến",
    processed_online: "Tỷ lệ hồ sơ xử lý trực tuyến", verdict: "Đánh giá", threshold: "ngưỡng",
    usage: "Sử dụng phần mềm dùng chung", meetings_period: "Họp không giấy qua Ecabinet (trong kỳ)",
    meetings_total: "Tổng số cuộc họp không giấy", signed_documents: "Tỷ lệ văn bản ký số",
    documents_online: "Tỷ lệ văn bản trao đổi trên môi trường mạng", official_email: "Tỷ lệ sử dụng thư công vụ",
    hotline: "Tổng đài 1022", figure: "Chỉ tiêu", messages: "Số tin",
    "Đạt": "Đạt", "Không đạt": "Không đạt", "Không phát sinh": "Không phát sinh",
    drill: "Xem các đơn vị của", campaign_span: "Từ {a} đến {b}", tt: "TT", no_campaign: "Chưa có chiến dịch",
  },
  en: {
    title: "Digital transformation dashboard", skip: "Skip to content", campaign: "Campaign",
    date: "Date", logout: "Sign out", login_title: "Sign in", login: "Sign in",
    login_help: "Enter the access token (viewer token) your administrator gave you.",
    token: "Access token", bad_token: "The token is invalid or was revoked.", metric: "Metric",
    live: "Live", connecting: "Connecting…", lost: "Connection lost",
    lost_long: "Connection to the server lost — reconnecting. Figures may be out of date.",
    as_of: "figures as of", no_data: "none yet", units: "Units",
    progress_of: "Progress", children_of: "Units below — sorted by progress",
    unit: "Unit", status: "Status", expected: "Expected by today",
    needed: "Needed per day", last7: "Last 7 days", per_day: "/day", projected: "Projected completion",
    done: "Done", on_track: "On track", lagging: "Lagging", no_target: "No target",
    lagging_mark: "Lagging", chart: "Daily counts", daily: "Count per day",
    pace: "Needed per day to finish on time", rankings: "Ranking of districts",
    rank: "Rank", value: "Value", year: "year", no_rows: "No figures",
    payments: "Online payments", day_of: "Day", month_of: "Month", year_of: "Year",
    nvtc: "Taxes (NVTC)", fee: "Fees and charges", count: "Count", amount: "Amount", total: "Total",
    grand: "Taxes, fees and charges", grand_count: "Transactions", grand_amount: "Amount",
    online: "Online public services (year to date)", online_share: "Online services with online filings",
    processed_online: "Filings processed online", verdict: "Verdict", threshold: "threshold",
    usage: "Shared software in use", meetings_period: "Paperless Ecabinet meetings (in the period)",
    meetings_total: "Paperless meetings in all", signed_documents: "Documents signed digitally",
    documents_online: "Documents exchanged online", official_email: "Official e-mail in use",
    hotline: "1022 hotline", figure: "Figure", messages: "Messages",
    "Đạt": "Met", "Không đạt": "Not met", "Không phát sinh": "Nothing filed",
    drill: "Show the units of", campaign_span: "From {a} to {b}", tt: "#", no_campaign: "No campaign yet",
  },
};

const METRIC_NAMES = {
  vi: {
    "eid.activated": "Kích hoạt định danh điện tử", "eid.activated.level2": "Định danh điện tử mức 2",
    "cccd.issued": "Cấp căn cước công dân", "sim.registered": "SIM chính chủ kèm chữ ký số",
    "smartphone.replaced": "Điện thoại 4G thay 2G", "filing.submitted": "Hồ sơ tiếp nhận",
    "filing.submitted.online": "Hồ sơ nộp trực tuyến", "filing.processed": "Hồ sơ đã giải quyết",
    "filing.processed.online": "Hồ sơ xử lý trực tuyến", "filing.processed.on_time": "Hồ sơ đúng hạn",
    "payment.nvtc.count": "Giao dịch NVTC", "payment.fee.count": "Giao dịch phí, lệ phí",
    "payment.nvtc.amount_vnd": "Số tiền NVTC (đồng)", "payment.fee.amount_vnd": "Số tiền phí, lệ phí (đồng)",
    "payment.failed.count": "Giao dịch lỗi",
    "filing.processed.online_rate": "Tỷ lệ hồ sơ xử lý trực tuyến",
    "filing.submitted.online_rate": "Tỷ lệ hồ sơ nộp trực tuyến",
    "filing.processed.on_time_rate": "Tỷ lệ hồ sơ đúng hạn",
    "payment.success_rate": "Tỷ lệ thanh toán thành công",
    "filing.services_with_online_share": "Tỷ lệ DVCTT phát sinh hồ sơ trực tuyến",
  },
  en: {
    "eid.activated": "e-ID activations", "eid.activated.level2": "e-ID activations, level 2",
    "cccd.issued": "ID cards issued", "sim.registered": "Owner-registered SIMs with signature",
    "smartphone.replaced": "4G phones replacing 2G", "filing.submitted": "Filings submitted",
    "filing.submitted.online": "Filings submitted online", "filing.processed": "Filings processed",
    "filing.processed.online": "Filings processed online", "filing.processed.on_time": "Filings on time",
    "payment.nvtc.count": "Tax payments", "payment.fee.count": "Fee payments",
    "payment.nvtc.amount_vnd": "Taxes paid (VND)", "payment.fee.amount_vnd": "Fees paid (VND)",
    "payment.failed.count": "Failed payments",
    "filing.processed.online_rate": "Share processed online",
    "filing.submitted.online_rate": "Share submitted online",
    "filing.processed.on_time_rate": "Share processed on time",
    "payment.success_rate": "Payment success rate",
    "filing.services_with_online_share": "Online services with online filings",
  },
};
// Every indicator's names and kind, from the registry (GET /v1/indicators): one an admin
// defined a moment ago is named and shown as a rate or a count like the shipped ones. The short
// labels above stay the shipped indicators' names on this screen.
const RATE_KINDS = new Set(["rate", "online_services_share"]);
const isRate = (m) => RATE_KINDS.has(state.indicators[m]?.kind) || m.endsWith("_rate") || m.endsWith("_share");

const state = {
  lang: localStorage.getItem(LANG_KEY) || "vi",
  token: sessionStorage.getItem(TOKEN_KEY),
  campaigns: [],
  indicators: {},
  view: { campaign: null, date: null, unit: "binh-phuoc", metric: null },
  data: {},
  asOf: null,
  conn: "connecting",
  stream: null,
  retryMs: 1000,
  refreshing: false,
  again: false,
};

const $ = (id) => document.getElementById(id);
const t = (key) => T[state.lang][key] ?? key;
const metricName = (m) =>
  METRIC_NAMES[state.lang][m] ?? state.indicators[m]?.[state.lang === "vi" ? "name_vi" : "name_en"] ?? m;

// -- formatting: Vietnamese writes 518.898 and 103,37% -----------------------------------------

function groupDigits(digits, sep) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, sep);
}
function fmtInt(value) {
  if (value === null || value === undefined) return "—";
  const n = Math.round(Number(value));
  const text = groupDigits(String(Math.abs(n)), state.lang === "vi" ? "." : ",");
  return n < 0 ? "−" + text : text;
}
function fmtDec(value, places) {
  if (value === null || value === undefined) return "—";
  const [whole, frac] = Math.abs(Number(value)).toFixed(places).split(".");
  const sign = Number(value) < 0 ? "−" : "";
  const grouped = groupDigits(whole, state.lang === "vi" ? "." : ",");
  return sign + grouped + (frac ? (state.lang === "vi" ? "," : ".") + frac : "");
}
const fmtPct = (percent) => (percent === null || percent === undefined ? "—" : fmtDec(percent, 2) + "%");
const fmtValue = (metric, v) => (isRate(metric) ? (v === null ? "—" : fmtPct(v * 100)) : fmtInt(v));
const dashIfZero = (v) => (v ? fmtInt(v) : "-"); // as the seed tables write an empty cell
function fmtDate(iso) {
  if (!iso) return "—";
  const [y, m, d] = iso.slice(0, 10).split("-");
  return state.lang === "vi" ? `${Number(d)}/${Number(m)}/${y}` : `${y}-${m}-${d}`;
}
function fmtAsOf(iso) {
  if (!iso) return t("no_data");
  const local = new Date(new Date(iso).getTime() + TZ_OFFSET_MS).toISOString();
  return `${local.slice(11, 19)} ${fmtDate(local.slice(0, 10))}`;
}
function todayLocal() {
  return new Date(Date.now() + TZ_OFFSET_MS).toISOString().slice(0, 10);
}
function addDays(iso, days) {
  const d = new Date(iso + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

// -- DOM helpers: text only through textContent, so no unit name can inject markup --------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child);
  }
  return el;
}
const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  for (const child of children) el.append(child);
  return el;
}

// -- API ------------------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path, params) {
  const query = params ? "?" + new URLSearchParams(params) : "";
  const response = await fetch(path + query, {
    headers: { Authorization: "Bearer " + state.token, Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

// -- the view's state lives in the URL fragment (never the token), so a link or reload keeps it -

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  state.view.campaign = p.get("c") || state.view.campaign;
  state.view.date = p.get("d") || state.view.date || todayLocal();
  state.view.unit = p.get("u") || "binh-phuoc";
  state.view.metric = p.get("m") || state.view.metric;
}
function writeHash(changes, push) {
  Object.assign(state.view, changes);
  const v = state.view;
  const hash = "#" + new URLSearchParams({ c: v.campaign || "", d: v.date, u: v.unit, m: v.metric || "" });
  if (push) location.hash = hash; // drill-downs are history entries: Back goes up a level
  else history.replaceState(null, "", hash);
}

// -- loading ------------------------------------------------------------------------------

async function start() {
  applyLanguage();
  if (!state.token) return showLogin();
  try {
    const [campaigns, indicators] = await Promise.all([api("/v1/campaigns"), api("/v1/indicators")]);
    state.campaigns = campaigns;
    state.indicators = Object.fromEntries(indicators.map((i) => [i.id, i]));
  } catch (err) {
    if (err instanceof Unauthorized) return showLogin(t("bad_token"));
    setConn("lost");
    setTimeout(start, 3000);
    return;
  }
  readHash();
  if (!state.campaigns.some((c) => c.id === state.view.campaign)) {
    const date = state.view.date;
    const current = state.campaigns.find((c) => c.starts <= date && date <= c.ends);
    state.view.campaign = (current || state.campaigns[0] || {}).id || null;
  }
  $("login").hidden = true;
  $("controls").hidden = false;
  $("board").hidden = false;
  $("conn").hidden = false;
  fillCampaigns();
  $("date").value = state.view.date;
  writeHash({}, false);
  await refresh();
  connect();
}

function showLogin(message) {
  disconnect();
  $("login").hidden = false;
  $("board").hidden = true;
  $("controls").hidden = true;
  $("conn").hidden = true;
  $("lost").hidden = true;
  $("login-error").textContent = message || "";
  $("token").focus();
}

// Re-reads everything shown; a change arriving meanwhile queues exactly one more pass.
async function refresh() {
  if (state.refreshing) {
    state.again = true;
    return;
  }
  state.refreshing = true;
  document.body.dataset.busy = "1";
  try {
    do {
      state.again = false;
      await load();
    } while (state.again);
  } catch (err) {
    if (err instanceof Unauthorized) showLogin(t("bad_token"));
    else console.warn("refresh failed", err);
  } finally {
    state.refreshing = false;
    document.body.dataset.busy = "0";
  }
}

async function load() {
  const v = state.view;
  if (!v.campaign) {
    $("overview-title").textContent = t("no_campaign");
    return;
  }
  const progress = await api(`/v1/campaigns/${encodeURIComponent(v.campaign)}/progress`, {
    unit_id: v.unit,
    at: v.date,
  });
  const metrics = progress.units[0].metrics.map((m) => m.metric);
  if (!metrics.includes(v.metric)) writeHash({ metric: metrics[0] || null }, false);
  state.data.progress = progress;
  noteAsOf(progress.as_of);
  renderOverview();
  const campaign = progress.campaign;
  const last = v.date < campaign.ends ? v.date : campaign.ends;
  let first = addDays(last, -(CHART_DAYS - 1));
  if (first < campaign.starts) first = campaign.starts;
  const metric = state.view.metric;
  const cycle = reportCycle(v.date);
  const hotlinePeriod = `range:${cycle.from}..${v.date}`;
  const [series, rankings, payments, online, usage, hotline] = await Promise.all([
    metric && first <= last
      ? api("/v1/series", { unit_id: v.unit, metric, from: first, to: last })
      : null,
    metric
      ? api("/v1/rankings", { metric, period: "year:" + v.date.slice(0, 4), level: "district" })
      : null,
    api("/v1/reports/payments", { date: v.date }),
    api("/v1/reports/online-services", { date: v.date, campaign: v.campaign }),
    api("/v1/reports/software-usage", { from: cycle.from, to: cycle.to }),
    Promise.all(
      HOTLINE.map((metric) =>
        api("/v1/totals", { unit_id: "binh-phuoc", metric, period: hotlinePeriod }).then((r) => [metric, r.value]),
      ),
    ).then((figures) => ({ from: cycle.from, to: v.date, figures })),
  ]);
  Object.assign(state.data, { series, rankings, payments, online, usage, hotline });
  renderRest();
}

// -- live -----------------------------------------------------------------------------------

// Server-Sent Events read through fetch: EventSource cannot send the Authorization header, and
// the token must not go into the URL. Reconnects with backoff; a heartbeat arrives every 15 s,
// so 40 s of silence means the connection is dead even if no error surfaced.
async function connect() {
  disconnect();
  const controller = new AbortController();
  state.stream = controller;
  const metrics = new Set(BASE_WATCH);
  for (const m of state.data.progress?.units[0].metrics ?? []) metrics.add(m.metric);
  const params = new URLSearchParams();
  for (const m of metrics) params.append("watch", `binh-phuoc:${m}:all`);
  let watchdog = null;
  const arm = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => controller.abort(), 40000);
  };
  try {
    arm();
    const response = await fetch("/v1/stream?" + params, {
      headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" },
      cache: "no-store",
      signal: controller.signal,
    });
    if (response.status === 401) {
      clearTimeout(watchdog);
      showLogin(t("bad_token"));
      return;
    }
    if (!response.ok) throw new Error("stream " + response.status);
    setConn("live");
    state.retryMs = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      arm();
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        onMessage(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (err) {
    if (state.stream !== controller) return; // replaced on purpose
  } finally {
    clearTimeout(watchdog);
  }
  if (state.stream !== controller) return;
  state.stream = null;
  setConn("lost");
  const wait = state.retryMs;
  state.retryMs = Math.min(state.retryMs * 2, 5000);
  setTimeout(async () => {
    if (state.stream || !state.token) return;
    await refresh(); // catch up with what changed while we were away
    connect();
  }, wait);
}

function disconnect() {
  const controller = state.stream;
  state.stream = null;
  if (controller) controller.abort();
}

let pending = null;
function onMessage(block) {
  const data = block
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).trimStart())
    .join("\n");
  if (!data) return; // a heartbeat comment
  const body = JSON.parse(data);
  noteAsOf(body.as_of);
  // The first messages of a connection repeat every watched total: one re-read covers them.
  clearTimeout(pending);
  pending = setTimeout(refresh, 30);
}

function noteAsOf(asOf) {
  if (asOf && (!state.asOf || asOf > state.asOf)) state.asOf = asOf;
  renderConn();
}

function setConn(conn) {
  state.conn = conn;
  renderConn();
}

function renderConn() {
  const el = $("conn");
  el.className = "conn " + state.conn;
  el.dataset.state = state.conn;
  el.replaceChildren(
    h("span", { class: "dot", "aria-hidden": "true" }),
    h("strong", { text: t(state.conn) }),
    " · " + t("as_of") + " ",
    h("time", { id: "as-of", datetime: state.asOf || "", text: fmtAsOf(state.asOf) }),
  );
  const lost = $("lost");
  lost.hidden = state.conn !== "lost";
  lost.textContent = t("lost_long") + " (" + t("as_of") + " " + fmtAsOf(state.asOf) + ")";
}

// -- rendering ------------------------------------------------------------------------------

function statusBadge(status) {
  return h("span", { class: "badge " + (status || "none"), text: t(status || "no_target") });
}

function bar(p) {
  const percent = p.percent === null ? 0 : Math.min(Number(p.percent), 100);
  const wrap = h("div", {
    class: "bar " + (p.status || "none"),
    role: "progressbar",
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": String(Math.round(percent)),
    "aria-label": metricName(p.metric),
  });
  const fill = h("div", { class: "fill" });
  fill.style.width = percent + "%";
  wrap.append(fill);
  if (p.expected !== null && p.target && !isRate(p.metric)) {
    const marker = h("div", { class: "marker", title: t("expected") });
    marker.style.left = Math.min((100 * p.expected) / p.target, 100) + "%";
    wrap.append(marker);
  }
  return wrap;
}

function card(p) {
  const rate = isRate(p.metric);
  const details = [];
  if (p.expected !== null && !rate) details.push(`${t("expected")}: ${fmtInt(p.expected)}`);
  if (p.pace_needed_per_day !== null && p.pace_needed_per_day !== undefined)
    details.push(`${t("needed")}: ${fmtInt(Math.ceil(p.pace_needed_per_day))}${t("per_day")}`);
  if (p.pace_last_7_days !== null && p.pace_last_7_days !== undefined)
    details.push(`${t("last7")}: ${fmtDec(p.pace_last_7_days, 1)}${t("per_day")}`);
  if (p.projected_completion) details.push(`${t("projected")}: ${fmtDate(p.projected_completion)}`);
  return h(
    "article",
    { class: "card " + (p.status || "none"), "data-metric": p.metric },
    h("h3", { text: metricName(p.metric) }),
    h(
      "p",
      { class: "figure" },
      h("span", { class: "value", text: fmtValue(p.metric, p.value) }),
      p.target !== null ? h("span", { class: "target", text: " / " + fmtValue(p.metric, p.target) }) : null,
    ),
    h("p", { class: "pct-line" }, h("span", { class: "pct", text: fmtPct(p.percent) }), " ", statusBadge(p.status)),
    p.target !== null ? bar(p) : null,
    h("p", { class: "details", text: details.join(" · ") }),
  );
}

function renderOverview() {
  const progress = state.data.progress;
  const [self, ...children] = progress.units;
  const campaign = progress.campaign;
  $("overview-title").textContent = `${t("progress_of")}: ${self.name}`;
  $("campaign-span").textContent =
    campaign.name + " — " +
    t("campaign_span").replace("{a}", fmtDate(campaign.starts)).replace("{b}", fmtDate(campaign.ends));
  $("cards").replaceChildren(...self.metrics.map(card));
  renderCrumbs(self);
  fillMetrics(self.metrics.map((m) => m.metric));
  renderChildren(children);
}

function renderCrumbs(self) {
  const items = [];
  if (self.unit_id !== "binh-phuoc") {
    items.push(h("a", { href: "#", "data-unit": "binh-phuoc", onclick: drill, text: "Tỉnh Bình Phước" }));
    items.push(h("span", { "aria-hidden": "true", text: " › " }));
  }
  items.push(h("span", { "aria-current": "page", text: self.name }));
  $("crumbs").setAttribute("aria-label", t("units"));
  $("crumbs").replaceChildren(...items);
}

function drill(event) {
  event.preventDefault();
  writeHash({ unit: event.currentTarget.dataset.unit }, true);
}

function renderChildren(children) {
  const metric = state.view.metric;
  const of = (u) => u.metrics.find((m) => m.metric === metric) || {};
  // Sorted by progress on the chosen metric (percent, then value); units without a target last.
  const sorted = [...children].sort((a, b) => {
    const pa = of(a).percent, pb = of(b).percent;
    if ((pa === null) !== (pb === null)) return pa === null ? 1 : -1;
    if (pa !== pb && pa !== null) return pb - pa;
    return (of(b).value ?? -1) - (of(a).value ?? -1);
  });
  const metrics = state.data.progress.units[0].metrics.map((m) => m.metric);
  $("children-title").textContent = t("children_of");
  const head = h(
    "thead",
    null,
    h("tr", null, h("th", { scope: "col", text: t("tt") }), h("th", { scope: "col", text: t("unit") }),
      ...metrics.map((m) => h("th", { scope: "col", class: m === metric ? "sorted" : null, text: metricName(m) }))),
  );
  const rows = sorted.map((u, i) => {
    const lagging = u.metrics.some((m) => m.status === "lagging");
    const name = u.level === "district" || u.level === "province"
      ? h("a", { href: "#", "data-unit": u.unit_id, onclick: drill, "aria-label": `${t("drill")} ${u.name}`, text: u.name })
      : h("span", { text: u.name });
    return h(
      "tr",
      { class: lagging ? "lagging-row" : null, "data-unit": u.unit_id },
      h("td", { class: "num", text: String(i + 1) }),
      h("th", { scope: "row" }, name, lagging ? h("span", { class: "flag", text: " ⚠ " + t("lagging_mark") }) : null),
      ...u.metrics.map((p) =>
        h("td", { class: "cell " + (p.status || "none"), "data-metric": p.metric },
          h("span", { class: "value", text: fmtValue(p.metric, p.value) }),
          p.target !== null ? h("span", { class: "target", text: " / " + fmtValue(p.metric, p.target) }) : null,
          p.percent !== null ? h("span", { class: "pct", text: " " + fmtPct(p.percent) }) : null,
          p.target !== null ? bar(p) : null,
          p.status ? statusBadge(p.status) : null)),
    );
  });
  $("children").replaceChildren(
    h("caption", { class: "sr-only", text: t("children_of") }),
    head,
    h("tbody", null, rows.length ? rows : h("tr", null, h("td", { colspan: String(metrics.length + 2), text: t("no_rows") }))),
  );
}

function renderRest() {
  renderChart();
  renderRankings();
  renderPayments();
  renderOnline();
  renderUsage();
  renderHotline();
}

// The province's monthly reporting cycle, as the seed's tables write it ("từ 21/3 đến 20/4"):
// from the 21st of a month to the 20th of the next, the last one ended on or before the day.
// The software-usage table covers that cycle; the hotline's figures run on to the day itself.
const HOTLINE = [
  "hotline.received", "hotline.processed", "hotline.in_progress",
  "hotline.answered_by_operator", "hotline.forwarded",
];
function reportCycle(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  const end = new Date(Date.UTC(y, m - 1 - (d >= 20 ? 0 : 1), 20));
  const start = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth() - 1, 21));
  return { from: start.toISOString().slice(0, 10), to: end.toISOString().slice(0, 10) };
}

function renderUsage() {
  const r = state.data.usage;
  $("usage-title").textContent = `${t("usage")} — ${fmtDate(r.from)} – ${fmtDate(r.to)}`;
  const rates = ["signed_documents", "documents_online", "official_email"];
  const head = h(
    "thead",
    null,
    h("tr", null, h("th", { scope: "col", text: t("tt") }), h("th", { scope: "col", text: t("unit") }),
      h("th", { scope: "col", text: t("meetings_period") }), h("th", { scope: "col", text: t("meetings_total") }),
      ...rates.map((key) => h("th", { scope: "col", text: t(key) }))),
  );
  const row = (x, i, cls) =>
    h("tr", { "data-unit": x.unit_id ?? "total", class: cls },
      h("td", { class: "num", text: i === null ? "#" : String(i + 1) }),
      h("th", { scope: "row", text: i === null ? t("total") : x.name }),
      h("td", { class: "num", "data-cell": "ecabinet_meetings_period", text: fmtInt(x.ecabinet_meetings_period) }),
      h("td", { class: "num", "data-cell": "ecabinet_meetings_total", text: fmtInt(x.ecabinet_meetings_total) }),
      ...rates.map((key) => h("td", { class: "num", "data-cell": key, text: fmtPct(x[key].percent) })));
  $("usage").replaceChildren(head, h("tbody", null, r.rows.map((x, i) => row(x, i, null)), row(r.total, null, "total")));
}

function renderHotline() {
  const r = state.data.hotline;
  $("hotline-title").textContent = `${t("hotline")} — ${fmtDate(r.from)} – ${fmtDate(r.to)}`;
  const head = h("thead", null, h("tr", null, h("th", { scope: "col", text: t("figure") }), h("th", { scope: "col", text: t("messages") })));
  const rows = r.figures.map(([metric, value]) =>
    h("tr", { "data-metric": metric }, h("th", { scope: "row", text: metricName(metric) }), h("td", { class: "num", text: fmtInt(value) })));
  $("hotline").replaceChildren(head, h("tbody", null, rows));
}

function renderChart() {
  const series = state.data.series;
  const metric = state.view.metric;
  const self = state.data.progress.units[0];
  $("chart-title").textContent = `${t("chart")}: ${metricName(metric)} — ${self.name}`;
  if (!series) {
    $("chart").replaceChildren(h("p", { text: t("no_rows") }));
    return;
  }
  const p = self.metrics.find((m) => m.metric === metric) || {};
  const pace = p.pace_needed_per_day ?? null;
  const values = series.days.map((d) => Number(d.value ?? 0));
  // One SVG unit per CSS pixel of the box, so labels stay legible from a phone to a wall.
  const W = Math.max(300, Math.min($("chart").clientWidth || 640, 1200)), H = 240;
  const left = 48, bottom = 28, top = 12;
  const max = Math.max(1, pace ?? 0, ...values) * 1.1;
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const slot = (W - left - 8) / values.length;
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart-svg",
    "aria-label": `${t("chart")}: ${metricName(metric)}, ${fmtDate(series.from)} – ${fmtDate(series.to)}`,
  });
  svg.append(s("line", { x1: left, x2: W - 8, y1: y(0), y2: y(0), class: "axis" }));
  for (const v of [0, max / 2, max / 1.1]) {
    svg.append(s("text", { x: left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, document.createTextNode(fmtInt(v))));
  }
  series.days.forEach((d, i) => {
    const v = Number(d.value ?? 0);
    const rect = s("rect", {
      x: left + i * slot + slot * 0.15, y: y(v), width: Math.max(1, slot * 0.7), height: Math.max(0, y(0) - y(v)),
      class: "bar-day", "data-date": d.date, "data-value": String(v),
    });
    rect.append(s("title", {}, document.createTextNode(`${fmtDate(d.date)}: ${fmtValue(metric, d.value)}`)));
    svg.append(rect);
  });
  svg.append(s("text", { x: left, y: H - 8, class: "tick" }, document.createTextNode(fmtDate(series.from))));
  svg.append(s("text", { x: W - 8, y: H - 8, class: "tick", "text-anchor": "end" }, document.createTextNode(fmtDate(series.to))));
  const legend = [h("li", null, h("span", { class: "key bars", "aria-hidden": "true" }), t("daily"))];
  if (pace !== null) {
    svg.append(s("line", { x1: left, x2: W - 8, y1: y(pace), y2: y(pace), class: "pace" }));
    legend.push(h("li", null, h("span", { class: "key pace", "aria-hidden": "true" }), `${t("pace")}: ${fmtInt(Math.ceil(pace))}${t("per_day")}`));
  }
  $("chart").replaceChildren(svg, h("ul", { class: "legend" }, legend));
}

function renderRankings() {
  const r = state.data.rankings;
  $("rank-title").textContent = `${t("rankings")} — ${metricName(state.view.metric)}, ${t("year")} ${state.view.date.slice(0, 4)}`;
  if (!r) return $("rankings").replaceChildren();
  $("rankings").replaceChildren(
    ...r.units.map((u) =>
      h("li", { "data-unit": u.unit_id },
        h("span", { class: "rank", text: String(u.rank) }),
        h("span", { class: "name", text: u.name }),
        h("span", { class: "value", text: fmtValue(r.metric, u.value) }))),
  );
}

function renderPayments() {
  const r = state.data.payments;
  const [y, m, d] = r.date.split("-");
  $("pay-title").textContent = `${t("payments")} — ${fmtDate(r.date)}`;
  const spans = [
    ["day", `${t("day_of")} ${fmtDate(r.date)}`],
    ["month", `${t("month_of")} ${Number(m)}/${y}`],
    ["year", `${t("year_of")} ${y}`],
  ];
  void d;
  const head = h(
    "thead",
    null,
    h("tr", null, h("th", { rowspan: "3", scope: "col", text: t("tt") }), h("th", { rowspan: "3", scope: "col", text: t("unit") }),
      ...spans.map(([, label]) => h("th", { colspan: "4", scope: "colgroup", text: label }))),
    h("tr", null, ...spans.flatMap(() => [h("th", { colspan: "2", scope: "colgroup", text: t("nvtc") }), h("th", { colspan: "2", scope: "colgroup", text: t("fee") })])),
    h("tr", null, ...spans.flatMap(() => [0, 1].flatMap(() => [h("th", { scope: "col", text: t("count") }), h("th", { scope: "col", text: t("amount") })]))),
  );
  const cells = (row) =>
    spans.flatMap(([span]) =>
      ["nvtc", "fee"].flatMap((kind) => [
        h("td", { class: "num", "data-cell": `${span}.${kind}.count`, text: dashIfZero(row[span][kind].count) }),
        h("td", { class: "num", "data-cell": `${span}.${kind}.amount_vnd`, text: dashIfZero(row[span][kind].amount_vnd) }),
      ]));
  const body = r.rows.map((row, i) =>
    h("tr", { "data-unit": row.unit_id }, h("td", { class: "num", text: String(i + 1) }), h("th", { scope: "row", text: row.name }), ...cells(row)));
  const total = h("tr", { class: "total", "data-unit": "total" }, h("td", { text: "#" }), h("th", { scope: "row", text: t("total") }), ...cells(r.total));
  const grand = h(
    "tr",
    { class: "total", "data-unit": "grand" },
    h("td", { text: "#" }),
    h("th", { scope: "row", text: t("grand") }),
    ...spans.flatMap(([span]) => [
      h("td", { class: "num", colspan: "2", "data-cell": `${span}.all.count`, text: `${t("grand_count")}: ${fmtInt(r.total[span].all.count)}` }),
      h("td", { class: "num", colspan: "2", "data-cell": `${span}.all.amount_vnd`, text: `${t("grand_amount")}: ${fmtInt(r.total[span].all.amount_vnd)}` }),
    ]),
  );
  $("payments").replaceChildren(head, h("tbody", null, body, total, grand));
}

function verdictCell(cell, key) {
  return [
    h("td", { class: "num", "data-cell": key + ".percent", text: cell.percent === null ? "—" : fmtPct(cell.percent) }),
    h("td", { "data-cell": key + ".verdict" }, h("span", { class: "badge " + verdictClass(cell.verdict), text: t(cell.verdict) })),
  ];
}
const verdictClass = (v) => (v === "Đạt" ? "done" : v === "Không đạt" ? "lagging" : "none");

function renderOnline() {
  const r = state.data.online;
  $("online-title").textContent = `${t("online")} — ${fmtDate(r.from)} – ${fmtDate(r.date)}`;
  const head = h(
    "thead",
    null,
    h("tr", null, h("th", { rowspan: "2", scope: "col", text: t("tt") }), h("th", { rowspan: "2", scope: "col", text: t("unit") }),
      h("th", { colspan: "2", scope: "colgroup", text: `${t("online_share")} (${t("threshold")} ${fmtPct(r.thresholds.online_share * 100)})` }),
      h("th", { colspan: "2", scope: "colgroup", text: `${t("processed_online")} (${t("threshold")} ${fmtPct(r.thresholds.processed_online * 100)})` })),
    h("tr", null, ...[0, 1].flatMap(() => [h("th", { scope: "col", text: "%" }), h("th", { scope: "col", text: t("verdict") })])),
  );
  const row = (x, i, cls) =>
    h("tr", { "data-unit": x.unit_id, class: cls },
      h("td", { class: "num", text: i === null ? "#" : String(i + 1) }),
      h("th", { scope: "row", text: i === null ? t("total") : x.name }),
      ...verdictCell(x.online_share, "online_share"), ...verdictCell(x.processed_online, "processed_online"));
  $("online").replaceChildren(head, h("tbody", null, r.rows.map((x, i) => row(x, i, null)), row(r.total, null, "total")));
}

function fillCampaigns() {
  $("campaign").replaceChildren(
    ...state.campaigns.map((c) => h("option", { value: c.id, selected: c.id === state.view.campaign, text: c.name })),
  );
}

function fillMetrics(metrics) {
  const select = $("metric");
  select.replaceChildren(
    ...metrics.map((m) => h("option", { value: m, selected: m === state.view.metric, text: metricName(m) })),
  );
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  const other = state.lang === "vi" ? "en" : "vi";
  const button = $("lang");
  button.textContent = other === "en" ? "English" : "Tiếng Việt";
  button.lang = other;
  button.setAttribute("aria-label", other === "en" ? "Switch to English" : "Chuyển sang tiếng Việt");
}

function rerender() {
  applyLanguage();
  renderConn();
  if (state.data.progress) renderOverview();
  if (state.data.payments) renderRest();
}

// -- events ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem(TOKEN_KEY, state.token);
    start();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    showLogin();
  });
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "vi" ? "en" : "vi";
    localStorage.setItem(LANG_KEY, state.lang);
    rerender();
  });
  $("campaign").addEventListener("change", (e) => {
    writeHash({ campaign: e.target.value, metric: null }, false);
    refresh().then(connect); // the watched metrics follow the campaign's targets
  });
  $("date").addEventListener("change", (e) => {
    if (!e.target.value) return;
    writeHash({ date: e.target.value }, false);
    refresh();
  });
  $("metric").addEventListener("change", (e) => {
    writeHash({ metric: e.target.value }, false);
    refresh();
  });
  window.addEventListener("hashchange", () => {
    readHash();
    refresh();
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => state.data.payments && renderChart(), 200);
  });
  window.addEventListener("offline", () => {
    setConn("lost");
    disconnect();
    connectSoon();
  });
  window.addEventListener("online", () => {
    if (!state.stream && state.token) refresh().then(connect);
  });
  start();
});

function connectSoon() {
  setTimeout(() => {
    if (!state.stream && state.token && navigator.onLine) refresh().then(connect);
  }, state.retryMs);
}
