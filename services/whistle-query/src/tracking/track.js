// The resident's page: the code comes from the fragment (#CODE, never sent to a server in a URL)
// or the form, and goes to the API in a POST body. Times are Beijing time; the countdown runs on
// the server's clock (its `now` at the last read), so a phone with a wrong clock still counts right.
"use strict";

const $ = (id) => document.getElementById(id);
let code = "";
let serverOffsetMs = 0;
let dueAt = null;
let closed = false;
let supervised = false;
let ticker = 0;
let chosenResolved = null;

const time = (iso) =>
  new Date(iso).toLocaleString("zh-CN", {
    timeZone: "Asia/Shanghai",
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hour12: false,
  });

function show(message) {
  const m = $("message");
  m.textContent = message;
  m.hidden = !message;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  let data = {};
  try { data = await response.json(); } catch (_) { /* an empty or non-JSON body */ }
  return { ok: response.ok, status: response.status, data };
}

function tick() {
  const el = $("countdown");
  if (closed || !dueAt) {
    el.textContent = closed ? "已办结" : "";
    el.className = closed ? "done" : "";
    return;
  }
  const left = dueAt - (Date.now() + serverOffsetMs);
  if (left > 0) {
    const s = Math.floor(left / 1000);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    el.textContent = "距办理期限还有 " + (d > 0 ? d + " 天 " : "") + h + " 小时 " + m + " 分 " + sec + " 秒";
    el.className = "";
  } else {
    const hours = Math.floor(-left / 3600000);
    el.textContent = "已超期 " + hours + " 小时" + (supervised ? "，已督办" : "");
    el.className = "late";
  }
}

function render(c) {
  serverOffsetMs = new Date(c.now).getTime() - Date.now();
  dueAt = c.due_at ? new Date(c.due_at).getTime() : null;
  closed = c.status === "resolved" || c.status === "closed" || c.status === "closed_unverified" || c.status === "duplicate";
  supervised = c.supervised;
  $("category").textContent = c.category || "您反映的问题";
  $("status").textContent = c.status_zh;
  $("received").textContent = time(c.received_at);
  $("handlers").textContent = c.handlers.length ? c.handlers.join("、") : "正在分派";
  $("due").textContent = c.due_at ? time(c.due_at) : "—";
  const steps = $("steps");
  steps.replaceChildren(...c.steps.map((s) => {
    const li = document.createElement("li");
    const t = document.createElement("time");
    t.dateTime = s.at;
    t.textContent = time(s.at);
    li.append(t, document.createTextNode(s.label));
    return li;
  }));
  $("answer").hidden = !c.can_answer;
  $("rating").hidden = true;
  chosenResolved = null;
  const answered = $("answered");
  answered.hidden = !c.answered;
  answered.textContent = c.answered ? "您的评价：" + c.answered + "。感谢您的反馈！" : "";
  $("case").hidden = false;
  clearInterval(ticker);
  tick();
  ticker = setInterval(tick, 1000);
}

async function load() {
  if (!code) return;
  show("");
  const r = await post("/track/api/case", { code });
  if (r.ok) {
    render(r.data);
  } else {
    $("case").hidden = true;
    clearInterval(ticker);
    show(r.data.message || "查询失败，请稍后再试");
  }
}

async function answer(resolved, satisfaction) {
  for (const b of document.querySelectorAll("#answer button")) b.disabled = true;
  const r = await post("/track/api/answer", { code, resolved, satisfaction: satisfaction || "" });
  for (const b of document.querySelectorAll("#answer button")) b.disabled = false;
  if (!r.ok) show(r.data.message || "提交失败，请稍后再试");
  await load();
  if (r.ok) show("");
}

document.addEventListener("DOMContentLoaded", () => {
  $("lookup").addEventListener("submit", (e) => {
    e.preventDefault();
    code = $("code").value.trim();
    // The fragment keeps the code for a reload without sending it anywhere.
    history.replaceState(null, "", "#" + encodeURIComponent(code));
    load();
  });
  for (const b of document.querySelectorAll("[data-resolved]")) {
    b.addEventListener("click", () => {
      chosenResolved = b.dataset.resolved === "true";
      if (chosenResolved) {
        $("rating").hidden = false;
      } else {
        answer(false, "");
      }
    });
  }
  for (const b of document.querySelectorAll("[data-satisfaction]")) {
    b.addEventListener("click", () => answer(true, b.dataset.satisfaction));
  }
  const fromFragment = decodeURIComponent(location.hash.slice(1));
  if (fromFragment) {
    code = fromFragment;
    $("code").value = fromFragment;
    load();
  }
});
