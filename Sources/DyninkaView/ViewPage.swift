/// The live view's page: no framework and nothing fetched from elsewhere. The graph is the SVG
/// Graphviz drew on the server; the script only swaps it in and fills the tables, every second.

enum ViewPage {
    static func html(app: String) -> String {
        let title = app.replacingOccurrences(of: "<", with: "&lt;")
        return """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>\(title) · dyninka live view</title>
        <style>
          body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #1f2733; background: #fafbfd; }
          header { padding: 12px 20px; background: #25324a; color: #fff; display: flex; gap: 24px; align-items: baseline; }
          header h1 { font-size: 18px; margin: 0; }
          header span { font-size: 13px; opacity: 0.85; }
          main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 16px; padding: 16px 20px; }
          section { background: #fff; border: 1px solid #dde2ec; border-radius: 6px; padding: 10px 14px; }
          section h2 { font-size: 13px; text-transform: uppercase; letter-spacing: 0.05em; color: #5b6b8c; margin: 0 0 8px; }
          #graph svg { max-width: 100%; height: auto; }
          table { border-collapse: collapse; width: 100%; font-size: 12px; }
          th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eef1f6; }
          td.n { text-align: right; font-variant-numeric: tabular-nums; }
          .failure td { color: #c0392b; }
          .down { color: #9aa3b5; }
          ul { list-style: none; margin: 0; padding: 0; font-size: 12px; }
          li { padding: 3px 0; border-bottom: 1px solid #eef1f6; }
          li a { color: #25508f; cursor: pointer; }
          pre { font-size: 11px; background: #f4f6fb; padding: 8px; overflow-x: auto; }
          .wide { grid-column: 1 / -1; }
          .empty { color: #9aa3b5; font-style: italic; }
        </style>
        </head>
        <body>
        <header><h1>\(title)</h1><span id="topology"></span><span id="route"></span><span id="updated"></span></header>
        <main>
          <section class="wide"><h2>Dataflow</h2><div id="graph">drawing…</div></section>
          <section><h2>Services</h2>
            <table><thead><tr><th>service</th><th>node</th><th>instances</th><th>state</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>errors</th><th>function ms</th><th>answered</th></tr></thead>
            <tbody id="services"></tbody></table>
          </section>
          <section><h2>Recent failures</h2><table><thead><tr><th>last</th><th>times</th><th>service</th><th>status</th><th>message</th></tr></thead><tbody id="failures"></tbody></table></section>
          <section><h2>Recent traces</h2><ul id="traces"></ul><pre id="trace" hidden></pre></section>
          <section><h2>Events</h2><ul id="events"></ul></section>
        </main>
        <script>
        "use strict";
        const fixed = (value, digits) => value === undefined ? "–" : value.toFixed(digits);
        const text = (tag, value, cls) => { const e = document.createElement(tag); e.textContent = value; if (cls) e.className = cls; return e; };
        function row(cells, cls) {
          const tr = document.createElement("tr"); if (cls) tr.className = cls;
          for (const [value, numeric] of cells) tr.appendChild(text("td", value, numeric ? "n" : ""));
          return tr;
        }
        async function showTrace(id) {
          const response = await fetch("/api/trace/" + id);
          const pre = document.getElementById("trace");
          pre.textContent = await response.text(); pre.hidden = false;
        }
        async function refresh() {
          try {
            const state = await (await fetch("/api/state")).json();
            document.getElementById("topology").textContent = state.topology;
            document.getElementById("route").textContent = state.route;
            document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
            const services = document.getElementById("services"); services.replaceChildren();
            for (const s of state.services) {
              const f = s.figures || {};
              services.appendChild(row([[s.name], [s.node || "–"], [String(s.instances)], [s.state.join(", ") || "–"],
                [fixed(f.rate, 1), true], [fixed(f.p50, 2), true], [fixed(f.p99, 2), true],
                [f.errorRate === undefined ? "–" : (f.errorRate * 100).toFixed(1) + "%", true], [fixed(f.function, 3), true],
                [f.total === undefined ? "down" : String(f.total), true]], s.down ? "down" : ""));
            }
            const failures = document.getElementById("failures"); failures.replaceChildren();
            for (const f of state.failures) failures.appendChild(row([[new Date(f.at).toLocaleTimeString()], [String(f.count), true], [f.service], [String(f.status)], [f.message]], "failure"));
            if (!state.failures.length) failures.appendChild(row([["none so far"]], "empty"));
            const traces = document.getElementById("traces"); traces.replaceChildren();
            for (const t of state.traces) {
              const li = document.createElement("li"); const a = text("a", t.trace.slice(0, 16) + "…");
              a.onclick = () => showTrace(t.trace);
              li.append(a, " " + t.name + " · " + t.status + " · " + t.ms.toFixed(2) + " ms"); traces.appendChild(li);
            }
            if (!state.traces.length) traces.appendChild(text("li", "none yet", "empty"));
            const events = document.getElementById("events"); events.replaceChildren();
            for (const e of state.events) events.appendChild(text("li", new Date(e.at).toLocaleTimeString() + "  " + e.text));
            if (!state.events.length) events.appendChild(text("li", "no hot swaps or moves yet", "empty"));
            document.getElementById("graph").innerHTML = await (await fetch("/graph.svg")).text();
          } catch (error) {
            document.getElementById("updated").textContent = "cannot reach dyninka run: " + error;
          }
        }
        refresh();
        setInterval(refresh, 1000);
        </script>
        </body>
        </html>
        """
    }
}
