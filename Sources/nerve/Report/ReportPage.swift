// The report page: one self-contained HTML file holding every figure as inline SVG.

/// One figure of a report.
struct Figure {
  var id: String
  var title: String
  var svg: String
  var caption: String = ""
  /// A raster copy for lab reports (pictures of digits, filters, heat maps).
  var png: [UInt8]? = nil
}

/// A report ready to write: a title, facts shown as a table, and figures.
struct ReportPage {
  var title: String
  var facts: [(String, String)]
  var figures: [Figure]

  /// The page as HTML. It needs no network: SVG inline, pictures as PNG data URLs.
  var html: String {
    var out = """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <title>\(escapeXML(title))</title>
      <style>
      body { font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
      h1 { font-size: 22px; } table.facts td { padding: 2px 14px 2px 0; } table.facts td:first-child { color: #666; }
      figure { margin: 22px 0; } figcaption { color: #555; font-size: 13px; max-width: 900px; }
      svg { max-width: 100%; height: auto; } nav a { margin-right: 12px; font-size: 13px; }
      pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
      </style></head>
      <body data-figures="\(figures.count)">
      <h1>\(escapeXML(title))</h1>
      <table class="facts">
      """
    for (k, v) in facts {
      out += v.contains("\n") ? "<tr><td>\(escapeXML(k))</td><td><pre>\(escapeXML(v))</pre></td></tr>\n" : "<tr><td>\(escapeXML(k))</td><td>\(escapeXML(v))</td></tr>\n"
    }
    out += "</table>\n<nav>" + figures.map { "<a href=\"#\($0.id)\">\(escapeXML($0.title))</a>" }.joined() + "</nav>\n"
    for f in figures {
      out += "<figure id=\"\(f.id)\" class=\"figure\">\n\(f.svg)\n<figcaption>\(escapeXML(f.caption))</figcaption></figure>\n"
    }
    // Marks the page once every figure has drawn and every embedded picture has decoded, so a
    // headless browser (and the test suite) can confirm the report renders.
    out += """
      <script>
      window.addEventListener("load", () => {
        const figures = [...document.querySelectorAll("figure.figure")];
        let drawn = 0;
        const pictures = [];
        for (const f of figures) {
          const svg = f.querySelector("svg");
          if (svg && svg.getBBox().width > 0 && svg.getBoundingClientRect().height > 0) drawn++;
          for (const im of f.querySelectorAll("image")) pictures.push(im.getAttribute("href"));
        }
        document.body.dataset.rendered = drawn + "/" + figures.length;
        let decoded = 0, broken = 0;
        const done = () => { document.body.dataset.pictures = decoded + " decoded, " + broken + " broken"; };
        done();
        for (const href of pictures) {
          const img = new Image();
          img.onload = () => { if (img.naturalWidth > 0) decoded++; else broken++; done(); };
          img.onerror = () => { broken++; done(); };
          img.src = href;
        }
      });
      </script>
      </body></html>

      """
    return out
  }
}
