// The page `nerve serve` shows at /: draw a digit (mouse, pen or finger) or upload a photo of
// one, and watch the prediction. Self-contained (no outside scripts, fonts or styles), so it
// works offline; light and dark colour schemes; usable on a phone and from the keyboard.
// Element ids pinned by the tests and by users' scripts: pad, digit, clear, upload, bars, seen,
// summary, status.

enum DrawingPage {
  static func html(summary: String, inputShape: [Int]) -> String {
    page.replacingOccurrences(of: "{{SUMMARY}}", with: escaped(summary))
      .replacingOccurrences(of: "{{INPUT}}", with: inputText(inputShape))
  }

  /// The model's input as people say it: 28x28 for MNIST models, 8x8 for digits models.
  private static func inputText(_ shape: [Int]) -> String {
    switch shape.reduce(1, *) {
    case 784: "28x28"
    case 64: "8x8"
    default: shape.map(String.init).joined(separator: "x")
    }
  }

  private static func escaped(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }

  private static let page = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="color-scheme" content="light dark">
    <title>Nerve: draw a digit</title>
    <style>
    :root { --bg: #fafafa; --fg: #1b1b1f; --muted: #5d6069; --bar: #2f6fdf; --best: #d9480f; --card: #ffffff; --line: #d6d8de; }
    @media (prefers-color-scheme: dark) {
      :root { --bg: #15161a; --fg: #e8e9ee; --muted: #a3a7b3; --bar: #6ea1ff; --best: #ff8a4c; --card: #202228; --line: #3a3d46; }
    }
    * { box-sizing: border-box; }
    body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
    main { max-width: 860px; margin: 0 auto; padding: 16px; display: grid; gap: 16px; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
    @media (max-width: 640px) { main { grid-template-columns: minmax(0, 1fr); } }
    h1 { grid-column: 1 / -1; margin: 0; font-size: 1.3rem; }
    section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px; }
    #pad { display: block; width: 100%; aspect-ratio: 1; background: #fff; border-radius: 6px; border: 1px solid var(--line); touch-action: none; cursor: crosshair; }
    .controls { display: flex; gap: 8px; margin-top: 10px; flex-wrap: wrap; align-items: center; }
    button, .upload { font: inherit; padding: 8px 14px; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--fg); cursor: pointer; }
    button:focus-visible, .upload:focus-within { outline: 3px solid var(--bar); outline-offset: 2px; }
    .upload input { position: absolute; opacity: 0; width: 1px; height: 1px; }
    #digit { font-size: 5rem; font-weight: 700; line-height: 1; text-align: center; min-height: 5rem; color: var(--best); }
    #status { text-align: center; color: var(--muted); min-height: 1.5em; }
    #bars { display: grid; gap: 3px; margin-top: 8px; }
    .row { display: grid; grid-template-columns: 1.2em 1fr 3.6em; gap: 8px; align-items: center; font-variant-numeric: tabular-nums; }
    .track { height: 14px; background: var(--line); border-radius: 3px; overflow: hidden; }
    .fill { height: 100%; width: 0; background: var(--bar); transition: width .12s; }
    .row.best .fill { background: var(--best); }
    .row span:last-child { text-align: right; color: var(--muted); font-size: .85rem; }
    .seen { display: flex; gap: 12px; align-items: center; margin-top: 12px; color: var(--muted); font-size: .9rem; }
    #seen { width: 84px; height: 84px; image-rendering: pixelated; border: 1px solid var(--line); background: #000; }
    pre { margin: 0; overflow-x: auto; font-size: .8rem; color: var(--muted); }
    details { grid-column: 1 / -1; }
    </style>
    </head>
    <body>
    <main>
    <h1>Draw a digit</h1>
    <section aria-label="drawing pad">
      <canvas id="pad" width="280" height="280" aria-label="Drawing pad: draw one digit with mouse, pen or finger"></canvas>
      <div class="controls">
        <button id="clear" type="button" title="Clear the pad (Escape)">Clear</button>
        <label class="upload">Upload a photo<input id="upload" type="file" accept="image/png,image/x-portable-graymap,.png,.pgm"></label>
      </div>
    </section>
    <section aria-label="prediction">
      <div id="digit" aria-live="polite"></div>
      <div id="status">Draw a digit on the pad.</div>
      <div id="bars" role="list"></div>
      <div class="seen"><img id="seen" alt="The prepared image the model saw" src="data:,"><span>What the model saw, after preparation ({{INPUT}})</span></div>
    </section>
    <details open><summary>The model</summary><pre id="summary">{{SUMMARY}}</pre></details>
    </main>
    <script>
    "use strict";
    const pad = document.getElementById("pad"), ink = pad.getContext("2d");
    const digit = document.getElementById("digit"), status = document.getElementById("status");
    const bars = document.getElementById("bars"), seen = document.getElementById("seen");
    const rows = [];
    for (let d = 0; d < 10; d++) {
      const row = document.createElement("div");
      row.className = "row"; row.setAttribute("role", "listitem");
      row.innerHTML = `<span>${d}</span><div class="track"><div class="fill"></div></div><span>&ndash;</span>`;
      bars.appendChild(row); rows.push(row);
    }
    function blank() {
      ink.fillStyle = "#fff"; ink.fillRect(0, 0, pad.width, pad.height);
    }
    blank();
    // planned: the latest request planned (waiting for its timer, its image or its answer);
    // shown: the request whose answer is on screen. Answers older than the one shown are dropped.
    let drawing = false, last = null, inked = false, timer = null, planned = 0, shown = 0;
    function point(e) {
      const r = pad.getBoundingClientRect();
      return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
    }
    function stroke(to) {
      ink.strokeStyle = "#000"; ink.lineWidth = pad.width / 13; ink.lineCap = "round"; ink.lineJoin = "round";
      ink.beginPath(); ink.moveTo(last[0], last[1]); ink.lineTo(to[0], to[1]); ink.stroke();
      last = to; inked = true;
    }
    pad.addEventListener("pointerdown", e => {
      drawing = true; last = point(e); pad.setPointerCapture(e.pointerId); stroke(last); soon(); e.preventDefault();
    });
    pad.addEventListener("pointermove", e => { if (drawing) { stroke(point(e)); soon(); } });
    for (const type of ["pointerup", "pointercancel"]) {
      pad.addEventListener(type, () => { if (drawing) { drawing = false; soon(0); } });
    }
    // Debounced: at most one request per 120 ms while drawing; answers to older requests are
    // dropped, and the status says "thinking" until the latest drawing's answer is shown.
    function soon(delay = 120) {
      if (!inked) return;
      clearTimeout(timer);
      const id = ++planned;
      status.textContent = "thinking\u2026";
      timer = setTimeout(() => pad.toBlob(blob => ask(blob, "image/png", id), "image/png"), delay);
    }
    async function ask(body, type, id = ++planned) {
      status.textContent = "thinking\u2026";
      try {
        const answer = await fetch("predict", { method: "POST", headers: { "Content-Type": type }, body });
        const result = await answer.json();
        if (id < shown) return;
        shown = id;
        if (!answer.ok) { show(null); status.textContent = result.error || answer.statusText; return; }
        show(result);
        if (id < planned) status.textContent = "thinking\u2026"; // a newer drawing's answer is on its way
      } catch (err) {
        status.textContent = "no answer from the server: " + err;
      }
    }
    function show(result) {
      if (!result) { digit.textContent = ""; seen.src = "data:,"; rows.forEach(r => set(r, 0, false)); return; }
      digit.textContent = String(result.class);
      status.textContent = `${(100 * result.probabilities[result.class]).toFixed(1)}% sure`;
      rows.forEach((r, d) => set(r, result.probabilities[d] || 0, d === result.class));
      if (result.prepared) seen.src = result.prepared;
    }
    function set(row, p, best) {
      row.classList.toggle("best", best);
      row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
      row.lastElementChild.textContent = p ? (100 * p).toFixed(1) + "%" : "\u2013";
    }
    function clearPad() {
      blank(); inked = false; shown = ++planned; clearTimeout(timer); show(null);
      status.textContent = "Draw a digit on the pad.";
    }
    document.getElementById("clear").addEventListener("click", clearPad);
    document.addEventListener("keydown", e => { if (e.key === "Escape") clearPad(); });
    document.getElementById("upload").addEventListener("change", e => {
      const file = e.target.files[0];
      if (!file) return;
      const type = file.name.toLowerCase().endsWith(".pgm") ? "image/x-portable-graymap" : "image/png";
      if (type === "image/png") {
        const url = URL.createObjectURL(file), img = new Image();
        img.onload = () => {
          blank();
          const s = Math.min(pad.width / img.width, pad.height / img.height);
          ink.drawImage(img, (pad.width - img.width * s) / 2, (pad.height - img.height * s) / 2, img.width * s, img.height * s);
          URL.revokeObjectURL(url); inked = false;
        };
        img.src = url;
      }
      ask(file, type);
      e.target.value = "";
    });
    </script>
    </body>
    </html>
    """#
}
