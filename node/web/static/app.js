// mailarray webmail: a single page over the JSON API under /v1/mail/.
// Everything a message contains is put on the page with textContent, never
// as markup: mail is untrusted, and the page's CSP allows no inline script.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const pageSize = 50;
  const state = { offset: 0, total: 0, current: null };

  function status(text, isError) {
    const el = $("status");
    el.textContent = text || "";
    el.classList.toggle("error", !!isError);
  }

  // api calls the JSON API and returns the decoded body (null for 204);
  // a 401 returns the page to the login form.
  async function api(method, path, body) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    let data = null;
    if (resp.status !== 204) {
      data = await resp.json().catch(() => ({ error: "unexpected answer (" + resp.status + ")" }));
    }
    if (!resp.ok) {
      const err = new Error((data && data.error) || "HTTP " + resp.status);
      err.status = resp.status;
      if (resp.status === 401 && path !== "/v1/mail/login") {
        showLogin();
      }
      throw err;
    }
    return data;
  }

  function showLogin() {
    $("account").hidden = true;
    $("inbox").hidden = true;
    $("login").hidden = false;
    $("password").value = "";
    $("address").focus();
  }

  function showInbox(mailbox) {
    $("login").hidden = true;
    $("login-error").textContent = "";
    $("mailbox").textContent = mailbox;
    $("account").hidden = false;
    $("inbox").hidden = false;
    closeReader();
    state.offset = 0;
    loadList();
  }

  function formatSize(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  function formatDate(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleString();
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    td.title = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  async function loadList() {
    let page;
    try {
      page = await api("GET", "/v1/mail/messages?offset=" + state.offset + "&limit=" + pageSize);
    } catch (e) {
      if (e.status !== 401) status("Cannot list messages: " + e.message, true);
      return;
    }
    state.total = page.total;
    const tbody = $("messages").querySelector("tbody");
    tbody.replaceChildren();
    for (const m of page.messages) {
      const tr = document.createElement("tr");
      tr.dataset.id = m.id;
      tr.tabIndex = 0;
      cell(tr, m.from || "(no sender)");
      cell(tr, m.subject || "(no subject)");
      cell(tr, formatDate(m.date));
      cell(tr, formatSize(m.size), "num");
      if (state.current === m.id) tr.classList.add("selected");
      tr.addEventListener("click", () => openMessage(m.id));
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openMessage(m.id); });
      tbody.appendChild(tr);
    }
    $("count").textContent = page.total === 1 ? "1 message" : page.total + " messages";
    $("empty").hidden = page.messages.length > 0;
    $("newer").hidden = state.offset === 0;
    $("older").hidden = state.offset + page.messages.length >= page.total;
  }

  function msgPath(id) {
    return "/v1/mail/messages/" + encodeURIComponent(id);
  }

  async function openMessage(id) {
    let v;
    try {
      v = await api("GET", msgPath(id));
    } catch (e) {
      if (e.status !== 401) status("Cannot open the message: " + e.message, true);
      return;
    }
    state.current = id;
    for (const tr of $("messages").querySelectorAll("tbody tr")) {
      tr.classList.toggle("selected", tr.dataset.id === id);
    }
    $("reader-subject").textContent = v.subject || "(no subject)";
    const dl = $("reader-headers");
    dl.replaceChildren();
    for (const [name, value] of [["From", v.from], ["To", v.to], ["Cc", v.cc], ["Date", v.date]]) {
      if (!value) continue;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dl.append(dt, dd);
    }
    const ul = $("attachments");
    ul.replaceChildren();
    for (const a of v.attachments) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = msgPath(id) + "/attachments/" + a.index;
      link.download = a.filename;
      link.textContent = a.filename + " (" + formatSize(a.size) + ")";
      link.title = a.content_type;
      li.appendChild(link);
      ul.appendChild(li);
    }
    const notes = [];
    if (v.from_html) notes.push("This message has only an HTML version; its text is shown.");
    if (v.text_truncated) notes.push("The text is cut short here; download the message to see all of it.");
    if (v.problems && v.problems.length) notes.push("Parts could not be read: " + v.problems.join("; "));
    $("reader-note").textContent = notes.join(" ");
    $("reader-note").hidden = notes.length === 0;
    $("reader-body").textContent = v.text;
    $("raw").href = msgPath(id) + "/raw";
    $("raw").download = id + ".eml";
    $("reader").hidden = false;
    status("");
  }

  function closeReader() {
    state.current = null;
    $("reader").hidden = true;
    for (const tr of $("messages").querySelectorAll("tbody tr.selected")) tr.classList.remove("selected");
  }

  async function deleteCurrent() {
    const id = state.current;
    if (!id) return;
    try {
      await api("DELETE", msgPath(id));
    } catch (e) {
      if (e.status !== 401) status("Cannot delete: " + e.message, true);
      return;
    }
    closeReader();
    status("Message deleted.");
    if (state.offset > 0 && state.offset >= state.total - 1) state.offset = Math.max(0, state.offset - pageSize);
    await loadList();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      $("login-error").textContent = "";
      $("login-button").disabled = true;
      try {
        const r = await api("POST", "/v1/mail/login", { address: $("address").value, password: $("password").value });
        $("password").value = "";
        status("");
        showInbox(r.mailbox);
      } catch (e) {
        $("login-error").textContent = e.message;
        $("password").value = "";
        $("password").focus();
      } finally {
        $("login-button").disabled = false;
      }
    });
    $("logout").addEventListener("click", async () => {
      // A JSON body: the server takes no logout another site could send.
      await api("POST", "/v1/mail/logout", {}).catch(() => {});
      status("Logged out.");
      showLogin();
    });
    $("refresh").addEventListener("click", () => { status(""); loadList(); });
    $("close").addEventListener("click", closeReader);
    $("delete").addEventListener("click", deleteCurrent);
    $("newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - pageSize); loadList(); });
    $("older").addEventListener("click", () => { state.offset += pageSize; loadList(); });
    try {
      const s = await api("GET", "/v1/mail/session");
      showInbox(s.mailbox);
    } catch (e) {
      showLogin();
    }
  });
})();
