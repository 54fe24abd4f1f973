// Flamestream flame-graph page: renders the embedded folded stacks with d3-flame-graph.
//
// Data (the <script id="fs-data"> JSON written by the file sink):
//   {"title": "...", "unit": "samples",
//    "names": ["main", ...],                    // frame names
//    "spans": ["GET /checkout", ...],            // span names
//    "stacks": [[span, value, f0, f1, ...], ...] // span: 1-based index into spans, 0 = none;
//   }                                            // frames root first (indices into names)
// URL hash parameters apply a filter on load (handy for links and headless tests):
//   page.html#span=GET%20%2Fcheckout&search=parse
import flamegraph from 'd3-flame-graph';
import { select } from 'd3-selection';

const kNoSpan = '(no span)';

function buildTree(data, spanFilter) {
  const root = { name: 'all', value: 0, children: [] };
  const index = new Map();  // node -> Map(name -> child)
  index.set(root, new Map());
  let total = 0;
  for (const row of data.stacks) {
    const span = row[0] === 0 ? kNoSpan : data.spans[row[0] - 1];
    if (spanFilter && span !== spanFilter) continue;
    const value = row[1];
    total += value;
    let node = root;
    node.value += value;
    for (let i = 2; i < row.length; i++) {
      const name = data.names[row[i]];
      const kids = index.get(node);
      let child = kids.get(name);
      if (!child) {
        child = { name, value: 0, children: [] };
        kids.set(name, child);
        index.set(child, new Map());
        node.children.push(child);
      }
      child.value += value;
      node = child;
    }
  }
  return { root, total };
}

function main() {
  const data = JSON.parse(document.getElementById('fs-data').textContent);
  document.title = 'Flamestream · ' + data.title;
  document.getElementById('title').textContent = data.title;
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ''));

  const select_ = document.getElementById('span-filter');
  const spanNames = [...data.spans];
  if (data.stacks.some((r) => r[0] === 0)) spanNames.push(kNoSpan);
  for (const name of [...new Set(spanNames)].sort()) {
    const opt = document.createElement('option');
    opt.value = name;
    opt.textContent = name;
    select_.appendChild(opt);
  }

  const chartDiv = document.getElementById('chart');
  const width = Math.max(600, (document.body.clientWidth || 1200) - 32);
  const chart = flamegraph()
    .width(width)
    .cellHeight(18)
    .transitionDuration(0)
    .minFrameSize(0)
    .sort(true)
    .title('')
    .setDetailsElement(document.getElementById('details'));

  function render() {
    const spanFilter = select_.value;
    const { root, total } = buildTree(data, spanFilter);
    chartDiv.dataset.total = String(total);
    chartDiv.dataset.span = spanFilter;
    document.getElementById('summary').textContent =
        `${total} ${data.unit}` + (spanFilter ? ` in span "${spanFilter}"` : '');
    select(chartDiv).selectAll('svg').remove();
    select(chartDiv).datum(root).call(chart);
    const term = document.getElementById('search').value;
    if (term) chart.search(term);
  }

  select_.addEventListener('change', render);
  document.getElementById('search-go').addEventListener('click', () => {
    const term = document.getElementById('search').value;
    if (term) chart.search(term); else chart.clear();
  });
  document.getElementById('search').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') document.getElementById('search-go').click();
  });
  document.getElementById('reset').addEventListener('click', () => chart.resetZoom());

  if (params.has('span')) select_.value = params.get('span');
  if (params.has('search')) document.getElementById('search').value = params.get('search');
  render();
}

main();
