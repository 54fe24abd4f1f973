#include "flamestream/pprofutil/flamegraph.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "flamestream/pprofutil/report.h"

namespace flamestream::pprofutil {
namespace {

struct Node {
  int64_t before = 0;
  int64_t after = 0;
  std::map<std::string, std::unique_ptr<Node>> children;  // sorted: stable page layout
};

void AddStacks(const StackSet& set, bool is_after, Node& root) {
  for (const auto& [frames, value] : set.stacks) {
    Node* n = &root;
    (is_after ? n->after : n->before) += value;
    for (const std::string& f : frames) {
      std::unique_ptr<Node>& child = n->children[f];
      if (!child) child = std::make_unique<Node>();
      n = child.get();
      (is_after ? n->after : n->before) += value;
    }
  }
}

double Share(int64_t v, int64_t total) {
  return total == 0 ? 0.0 : static_cast<double>(v) / static_cast<double>(total);
}

double MaxDelta(const Node& n, int64_t bt, int64_t at) {
  double m = 0;
  for (const auto& [name, c] : n.children) {
    m = std::max(m, std::fabs(Share(c->after, at) - Share(c->before, bt)));
    m = std::max(m, MaxDelta(*c, bt, at));
  }
  return m;
}

void WriteNode(const std::string& name, const Node& n, std::string& out) {
  out += fmt::format("[\"{}\",{},{},[", JsonEscape(name), n.before, n.after);
  bool first = true;
  for (const auto& [child_name, c] : n.children) {
    if (!first) out += ',';
    first = false;
    WriteNode(child_name, *c, out);
  }
  out += "]]";
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

constexpr std::string_view kPageHead = R"(<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font:12px sans-serif;margin:10px;color:#222}}
h1{{font-size:16px;margin:0 0 4px}}
#fg{{position:relative;width:100%;margin-top:6px}}
.f{{position:absolute;height:17px;overflow:hidden;white-space:nowrap;box-sizing:border-box;
  border:1px solid #fff;padding:0 3px;line-height:15px;cursor:pointer;font-family:monospace}}
.f:hover{{border-color:#000}}
#info{{font-family:monospace;min-height:16px;margin-top:4px}}
</style></head><body>
<h1>{title}</h1>
<div>{summary}</div>
<div>Width: <label><input type="radio" name="w" value="a" checked> after</label>
<label><input type="radio" name="w" value="b"> before</label>
&nbsp;|&nbsp; <span style="background:#f66">&nbsp;red&nbsp;</span> share grew,
<span style="background:#66f;color:#fff">&nbsp;blue&nbsp;</span> share shrank
&nbsp;|&nbsp; click a frame to zoom, the top frame to reset</div>
<div id="info"></div>
<div id="fg"></div>
<script>
)";

constexpr std::string_view kPageScript = R"(
(function () {
  const BT = D.bt || 1, AT = D.at || 1, MAXD = D.maxd || 1;
  let mode = 'a', focus = D.root;
  (function link(n, p) { n.p = p; for (const c of n[3]) link(c, n); })(D.root, null);
  const val = n => (mode === 'a' ? n[2] : n[1]);
  const delta = n => n[2] / AT - n[1] / BT;
  const pct = x => (100 * x).toFixed(2) + '%';
  function color(n) {
    const d = delta(n), t = Math.min(1, Math.abs(d) / MAXD), c = Math.round(255 - 200 * t);
    return d > 0 ? `rgb(255,${c},${c})` : d < 0 ? `rgb(${c},${c},255)` : 'rgb(245,245,245)';
  }
  function describe(n) {
    return `${n[0]}  before ${pct(n[1] / BT)}  after ${pct(n[2] / AT)}  ` +
           `delta ${(100 * delta(n)).toFixed(2)} pp`;
  }
  function render() {
    const fg = document.getElementById('fg');
    fg.textContent = '';
    const W = fg.clientWidth;
    let maxDepth = 0;
    function box(n, x, w, depth) {
      maxDepth = Math.max(maxDepth, depth);
      const e = document.createElement('div');
      e.className = 'f';
      e.style.left = x + 'px';
      e.style.width = w + 'px';
      e.style.top = depth * 18 + 'px';
      e.style.background = color(n);
      e.textContent = n[0];
      e.title = describe(n);
      e.onmouseover = () => { document.getElementById('info').textContent = describe(n); };
      e.onclick = () => { focus = n; render(); };
      fg.appendChild(e);
    }
    const ancestors = [];
    for (let a = focus.p; a; a = a.p) ancestors.unshift(a);
    ancestors.forEach((a, i) => box(a, 0, W, i));
    (function draw(n, x, w, depth) {
      if (w < 2) return;
      box(n, x, w, depth);
      const total = val(n) || 1;
      let cx = x;
      for (const c of n[3]) {
        const cw = (w * val(c)) / total;
        draw(c, cx, cw, depth + 1);
        cx += cw;
      }
    })(focus, 0, W, ancestors.length);
    fg.style.height = (maxDepth + 1) * 18 + 'px';
  }
  for (const r of document.querySelectorAll('input[name=w]')) {
    r.onchange = () => { mode = r.value; render(); };
  }
  window.onresize = render;
  render();
})();
</script>
</body></html>
)";

}  // namespace

std::string JsonEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        // '<', '>' and '&' as escapes so a frame name cannot close the <script> element.
        if (c < 0x20 || c == '<' || c == '>' || c == '&') {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string DiffTreeJson(const StackSet& before, const StackSet& after) {
  Node root;
  AddStacks(before, /*is_after=*/false, root);
  AddStacks(after, /*is_after=*/true, root);
  std::string out = fmt::format("{{\"bt\":{},\"at\":{},\"unit\":\"{}\",\"maxd\":{:.6f},\"root\":",
                                before.total, after.total, JsonEscape(after.unit),
                                MaxDelta(root, before.total, after.total));
  WriteNode("all", root, out);
  out += "}";
  return out;
}

std::string DiffFlameGraphHtml(const StackSet& before, const StackSet& after,
                               const std::string& title) {
  const std::string summary = HtmlEscape(fmt::format(
      "{}: before {} total in {} distinct stacks, after {} total in {} distinct stacks",
      after.sample_type, FormatValue(before.total, before.unit), before.stacks.size(),
      FormatValue(after.total, after.unit), after.stacks.size()));
  std::string page = fmt::format(fmt::runtime(kPageHead), fmt::arg("title", HtmlEscape(title)),
                                 fmt::arg("summary", summary));
  page += "const D = ";
  page += DiffTreeJson(before, after);
  page += ";";
  page += kPageScript;
  return page;
}

}  // namespace flamestream::pprofutil
