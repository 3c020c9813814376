/* AER dashboard: progressive enhancement over server-rendered pages. No dependencies.
   Every call goes to this server's JSON API (/api/v1) with the page's CSRF token. */
"use strict";
(function () {
  var TERMINAL = ["succeeded", "completed_with_errors", "failed", "cancelled"];
  var token = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function headers(extra) {
    var h = { "Accept": "application/json", "X-CSRF-Token": token };
    for (var k in extra || {}) { h[k] = extra[k]; }
    return h;
  }
  function duration(s) {  /* as display.duration on the server */
    if (s == null) { return "–"; }
    var t = Math.round(s);
    if (t < 60) { return t + " s"; }
    if (t < 3600) { return Math.floor(t / 60) + " min " + (t % 60) + " s"; }
    var m = Math.floor((t % 3600) / 60);
    return Math.floor(t / 3600) + " h " + (m < 10 ? "0" : "") + m + " min";
  }
  function errorText(body, status) {
    return (body && body.error && body.error.message) || ("the server answered " + status);
  }

  /* Confirmation before destructive forms (cancel, delete). */
  $$("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });

  /* Live progress: poll the job's JSON and update the fields of its row or card. */
  function setField(root, name, text) {
    $$('[data-field="' + name + '"]', root).forEach(function (el) {
      if (el.tagName === "PROGRESS") { el.value = text; } else { el.textContent = text; }
    });
  }
  function showJob(root, job) {
    var c = job.counts;
    setField(root, "state", job.state.replace(/_/g, " "));
    $$('[data-field="state"]', root).forEach(function (el) { el.className = "state state-" + job.state; });
    setField(root, "progress", job.percent);
    setField(root, "percent", Math.round(job.percent) + " %");
    setField(root, "finished", c.done + c.failed);
    setField(root, "done", c.done);
    setField(root, "failed", c.failed);
    setField(root, "pending", c.pending + c.running);
    setField(root, "total", c.total);
    setField(root, "rate", job.files_per_second == null ? "–" : job.files_per_second.toFixed(2));
    setField(root, "eta", duration(job.eta_s));
  }
  function poll(root) {
    var url = root.getAttribute("data-poll");
    fetch(url, { headers: headers(), credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) {
        if (!job) { return; }
        showJob(root, job);
        if (TERMINAL.indexOf(job.state) >= 0) {
          root.removeAttribute("data-poll");
          if (root.hasAttribute("data-reload")) { window.location.reload(); }
        }
      })
      .catch(function () { /* the next poll tries again */ })
      .then(function () {
        if (root.hasAttribute("data-poll")) { window.setTimeout(function () { poll(root); }, 1500); }
      });
  }
  $$("[data-poll]").forEach(function (root) { window.setTimeout(function () { poll(root); }, 1000); });

  /* New job: files, folders and zips by picker or drag and drop; upload with progress. */
  var form = $("#upload-form");
  if (form) {
    var chosen = [];
    var selection = $("#selection");
    var showChosen = function () {
      var bytes = chosen.reduce(function (n, f) { return n + f.size; }, 0);
      selection.textContent = chosen.length ? chosen.length + " file(s), " +
        (bytes / 1048576).toFixed(1) + " MB" : "No files chosen.";
      var name = form.elements.name;
      if (chosen.length && !name.value) { name.placeholder = chosen[0].top; }
    };
    /* A file keeps its path inside a dropped or chosen folder: the API stores it so. */
    var add = function (file, path) {
      chosen.push({ file: file, path: path, top: path.split("/")[0], size: file.size });
    };
    var addList = function (files) {
      Array.prototype.forEach.call(files, function (f) { add(f, f.webkitRelativePath || f.name); });
      showChosen();
    };
    $("#files").addEventListener("change", function (ev) { addList(ev.target.files); ev.target.value = ""; });
    $("#folder-files").addEventListener("change", function (ev) { addList(ev.target.files); ev.target.value = ""; });
    var walk = function (entry) {
      return new Promise(function (done) {
        if (entry.isFile) {
          entry.file(function (f) { add(f, entry.fullPath.replace(/^\//, "")); done(); }, function () { done(); });
          return;
        }
        var reader = entry.createReader(), all = [];
        var more = function () {
          reader.readEntries(function (batch) {
            if (!batch.length) { Promise.all(all).then(done); return; }
            batch.forEach(function (e) { all.push(walk(e)); });
            more();
          }, function () { Promise.all(all).then(done); });
        };
        more();
      });
    };
    var zone = $("#dropzone");
    ["dragenter", "dragover"].forEach(function (t) {
      zone.addEventListener(t, function (ev) { ev.preventDefault(); zone.classList.add("over"); });
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", function (ev) {
      ev.preventDefault();
      zone.classList.remove("over");
      var items = Array.prototype.slice.call(ev.dataTransfer.items || []);
      var entries = items.map(function (i) { return i.webkitGetAsEntry && i.webkitGetAsEntry(); });
      if (entries.length && entries.every(Boolean)) {
        Promise.all(entries.map(function (e) { return walk(e); })).then(showChosen);
      } else { addList(ev.dataTransfer.files); }
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var error = $("#upload-error"), status = $("#upload-status"), bar = $("#upload-progress");
      error.textContent = "";
      var maxMb = +form.getAttribute("data-max-mb"), maxFiles = +form.getAttribute("data-max-files");
      var bytes = chosen.reduce(function (n, f) { return n + f.size; }, 0);
      if (!chosen.length) { error.textContent = "files: attach at least one audio file or zip archive"; return; }
      if (bytes > maxMb * 1048576) { error.textContent = "the request is larger than the upload limit of " + maxMb + " MB"; return; }
      if (chosen.length > maxFiles) { error.textContent = "at most " + maxFiles + " files per job"; return; }
      var data = new FormData();
      chosen.forEach(function (c) { data.append("files", c.file, c.path); });
      ["model", "segmentation"].forEach(function (n) { data.append(n, form.elements[n].value); });
      data.append("channels", form.querySelector('input[name="channels"]:checked').value);
      var name = form.elements.name.value.trim() || form.elements.name.placeholder;
      if (name) { data.append("name", name); }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("data-api"));
      var h = headers();
      for (var k in h) { xhr.setRequestHeader(k, h[k]); }
      bar.hidden = false;
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) {
          bar.value = 100 * e.loaded / e.total;
          status.textContent = "Uploading… " + Math.round(bar.value) + " %";
        }
      };
      xhr.onload = function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status === 202 && body) {
          status.textContent = "Uploaded: job queued.";
          window.location.assign(form.getAttribute("data-job-url").replace("JOB_ID", body.id));
        } else {
          bar.hidden = true;
          status.textContent = "";
          error.textContent = errorText(body, xhr.status);
        }
      };
      xhr.onerror = function () { bar.hidden = true; error.textContent = "the upload failed: the server could not be reached"; };
      xhr.send(data);
    });
  }

  /* The JSON job forms (a folder, a bucket prefix, URLs): POST the body, then open the job. */
  function jobOptions(form, body) {
    var el = form.elements;
    body.model = el.model.value;
    body.segmentation = el.segmentation.value;
    body.channels = form.querySelector('input[name="channels"]:checked').value;
    if (el.name.value.trim()) { body.name = el.name.value.trim(); }
    return body;
  }
  /* The API's refusal in words: which rule refused the source, then its own message. */
  function refusal(body, status) {
    var code = body && body.error && body.error.code, text = errorText(body, status);
    if (code === "source_not_allowed") { return "Not allowed on this server: " + text; }
    if (code === "bad_source") { return "Not a valid address: " + text; }
    return text;
  }
  function postJson(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (b) { return [r.status, b]; }, function () { return [r.status, null]; });
    });
  }
  function jsonJobForm(form, error, makeBody) {
    if (!form) { return; }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = makeBody(form.elements);
      error.textContent = "";
      if (!body) { return; }
      var button = $("button[type=submit]", form);
      button.disabled = true;
      postJson(form.getAttribute("data-api"), jobOptions(form, body)).then(function (res) {
        if (res[0] === 202) {
          window.location.assign(form.getAttribute("data-job-url").replace("JOB_ID", res[1].id));
        } else { button.disabled = false; error.textContent = refusal(res[1], res[0]); }
      }).catch(function () { button.disabled = false; error.textContent = "the server could not be reached"; });
    });
  }
  function located(el, body) {
    body.recursive = el.recursive.checked;
    if (el.pattern.value.trim()) { body.pattern = el.pattern.value.trim(); }
    return body;
  }
  jsonJobForm($("#folder-form"), $("#folder-error"), function (el) {
    return located(el, { folder: el.folder.value });
  });
  jsonJobForm($("#bucket-form"), $("#bucket-error"), function (el) {
    return located(el, { source: el.source.value.trim() });
  });
  jsonJobForm($("#urls-form"), $("#urls-error"), function (el) {
    var urls = el.urls.value.split(/\s+/).filter(function (u) { return u; });
    if (!urls.length) { $("#urls-error").textContent = "urls: paste at least one https URL"; return null; }
    return { urls: urls };
  });

  /* Job page: export the results to a bucket; follow the exports until each is done. */
  var exportForm = $("#export-form");
  if (exportForm) {
    exportForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var el = exportForm.elements, error = $("#export-error"), button = $("button[type=submit]", exportForm);
      error.textContent = "";
      button.disabled = true;
      postJson(exportForm.getAttribute("data-api"), {
        destination: el.destination.value.trim(), format: el.format.value, granularity: el.granularity.value
      }).then(function (res) {
        if (res[0] === 202) { window.location.reload(); return; }
        button.disabled = false;
        error.textContent = refusal(res[1], res[0]);
      }).catch(function () { button.disabled = false; error.textContent = "the server could not be reached"; });
    });
  }
  function bytes(n) {
    if (n == null) { return ""; }
    if (n < 1024) { return n + " B"; }
    if (n < 1048576) { return (n / 1024).toFixed(1) + " kB"; }
    return (n / 1048576).toFixed(1) + " MB";
  }
  function pollExports(root) {
    fetch(root.getAttribute("data-exports-poll"), { headers: headers(), credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (list) {
        if (!list) { return; }
        var pending = false;
        list.items.forEach(function (x) {
          var row = $('tr[data-export="' + x.id + '"]', root);
          if (!row) { return; }
          var badge = $('[data-field="state"]', row);
          badge.textContent = x.state;
          badge.className = "state state-" + x.state;
          setField(row, "bytes", x.error ? "" : bytes(x.bytes));
          setField(row, "error", x.error || "");
          if (x.state === "queued" || x.state === "running") { pending = true; }
        });
        if (!pending) { root.removeAttribute("data-exports-poll"); }
      })
      .catch(function () { /* the next poll tries again */ })
      .then(function () {
        if (root.hasAttribute("data-exports-poll")) { window.setTimeout(function () { pollExports(root); }, 1500); }
      });
  }
  $$("[data-exports-poll]").forEach(function (root) { window.setTimeout(function () { pollExports(root); }, 1000); });

  /* Call page: play a segment (timeline bar or button) from its start to its end. */
  var player = $("#player");
  if (player) {
    var stopAt = null;
    var nowPlaying = $("#now-playing");
    player.addEventListener("timeupdate", function () {
      if (stopAt !== null && player.currentTime >= stopAt) { player.pause(); stopAt = null; }
    });
    var play = function (start, end) {
      stopAt = end;
      player.currentTime = start;
      var p = player.play();
      if (p && p.catch) { p.catch(function () { nowPlaying.textContent = "The audio cannot be played."; }); }
      nowPlaying.textContent = "Playing " + start.toFixed(1) + "–" + end.toFixed(1) + " s";
    };
    var fromEl = function (el) {
      var start = parseFloat(el.getAttribute("data-start") || el.getAttribute("data-play"));
      play(start, parseFloat(el.getAttribute("data-end")));
      var id = el.getAttribute("data-segment");
      if (id) {
        var row = document.getElementById("segment-" + id);
        $$(".segments tr.current").forEach(function (r) { r.classList.remove("current"); });
        if (row) { row.classList.add("current"); }
      }
    };
    $$("[data-play], rect.seg").forEach(function (el) {
      el.addEventListener("click", function () { fromEl(el); });
      el.addEventListener("keydown", function (ev) {
        if ((ev.key === "Enter" || ev.key === " ") && el.tagName.toLowerCase() === "rect") { ev.preventDefault(); fromEl(el); }
      });
    });
    player.addEventListener("error", function () {
      nowPlaying.textContent = "The audio of this call is no longer stored.";
    });
  }

  /* Corrected labels: PUT (or DELETE, for "—") to the JSON API. */
  $$("form.label-form").forEach(function (f) {
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var label = f.elements.label.value, out = $(".status", f);
      var init = { method: label ? "PUT" : "DELETE", credentials: "same-origin", headers: headers() };
      if (label) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify({ label: label });
      }
      out.textContent = "saving…";
      fetch(f.getAttribute("data-api"), init).then(function (r) {
        return r.json().then(function (b) { return [r.status, b]; });
      }).then(function (res) {
        out.textContent = res[0] === 200 ? (res[1].label ? "saved: " + res[1].label : "cleared")
          : errorText(res[1], res[0]);
      }).catch(function () { out.textContent = "the server could not be reached"; });
    });
  });
})();
