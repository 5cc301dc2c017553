import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { escapeXml, formatTick, lineSvg, niceTicks, scatterSvg, viridis } from '../algorithms/common/svg.ts';

const t = suite('svg');

/** Checks that tags nest and close properly and that attribute values are quoted; returns the element names. */
function checkXml(svg: string): string[] {
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'), 'root element with the SVG namespace');
  const stack: string[] = [];
  const names: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = tag.exec(svg))) {
    const between = svg.slice(last, m.index);
    assert.not.match(between, /[<>]/, `stray angle bracket near ${JSON.stringify(svg.slice(Math.max(0, m.index - 40), m.index))}`);
    assert.not.match(between, /&(?!(amp|lt|gt|quot|apos);)/, 'unescaped ampersand in text');
    last = tag.lastIndex;
    const [, closing, name, , selfClosing] = m;
    if (closing) {
      assert.is(stack.pop(), name, `closing </${name}> matches its opening tag`);
    } else {
      names.push(name!);
      if (!selfClosing) stack.push(name!);
    }
  }
  assert.is(svg.slice(last).trim(), '', 'nothing after the root element');
  assert.equal(stack, [], 'every element closed');
  return names;
}

interface Frame {
  x: number;
  y: number;
  w: number;
  h: number;
}

function frames(svg: string): Frame[] {
  return [...svg.matchAll(/<rect x="([\d.-]+)" y="([\d.-]+)" width="([\d.]+)" height="([\d.]+)"[^>]*stroke=/g)].map((m) => ({
    x: Number(m[1]), y: Number(m[2]), w: Number(m[3]), h: Number(m[4]),
  }));
}

function circles(s: string): { cx: number; cy: number; fill: string | null }[] {
  return [...s.matchAll(/<circle cx="([\d.-]+)" cy="([\d.-]+)" r="[\d.]+"(?: fill="(#[0-9a-f]{6})")?\/>/g)].map((m) => ({
    cx: Number(m[1]), cy: Number(m[2]), fill: m[3] ?? null,
  }));
}

t('scatterSvg: well-formed, one panel per entry, titles escaped, every point drawn', () => {
  const a = Float32Array.from([0, 0, 1, 1, 2, 0.5]);
  const b = Float64Array.from([-1, 2, 0.5, 0.25]);
  const svg = scatterSvg([
    { title: 'data <n=3> & more', points: a },
    { title: 'model "b"', points: b, color: '#123456' },
  ]);
  const names = checkXml(svg);
  assert.is(names.filter((n) => n === 'circle').length, 5);
  assert.ok(svg.includes('data &lt;n=3&gt; &amp; more'), 'first title, escaped');
  assert.ok(svg.includes('model &quot;b&quot;'), 'second title, escaped');
  assert.is(frames(svg).length, 2, 'a frame per panel');
  assert.ok(svg.includes('fill="#123456"'), 'panel colour');
  assert.match(svg, /width="640" height="320"/, 'two 320-pixel panels side by side');
  assert.ok(svg.includes('class="ticks"') && /<text[^>]*>0\.5<\/text>|<text[^>]*>1<\/text>/.test(svg), 'tick labels');
});

t('scatterSvg: given ranges are honoured (positions within the frame, outside points dropped, shared)', () => {
  const pts = Float64Array.from([
    0, 0, // lower-left corner
    10, 5, // upper-right corner
    5, 2.5, // centre
    11, 1, // right of the range: dropped
    1, -0.1, // below: dropped
  ]);
  const svg = scatterSvg([{ title: 'a', points: pts }, { title: 'b', points: pts.slice(4, 6) }], { xRange: [0, 10], yRange: [0, 5], width: 300, height: 200 });
  checkXml(svg);
  const [fa, fb] = frames(svg);
  const all = circles(svg);
  assert.is(all.length, 3 + 1);
  const close = (u: number, v: number) => Math.abs(u - v) <= 0.06;
  const [c0, c1, c2, c3] = all;
  assert.ok(close(c0!.cx, fa!.x) && close(c0!.cy, fa!.y + fa!.h), `(0, 0) at the lower-left corner: ${JSON.stringify(c0)} ${JSON.stringify(fa)}`);
  assert.ok(close(c1!.cx, fa!.x + fa!.w) && close(c1!.cy, fa!.y), '(10, 5) at the upper-right corner');
  assert.ok(close(c2!.cx, fa!.x + fa!.w / 2) && close(c2!.cy, fa!.y + fa!.h / 2), '(5, 2.5) at the centre');
  // the second panel uses the same ranges, shifted by one panel width
  assert.ok(close(fb!.x - fa!.x, 300), 'panels 300 apart');
  assert.ok(close(c3!.cx, fb!.x + fb!.w / 2) && close(c3!.cy, fb!.y + fb!.h / 2), 'second panel, same mapping');
  // ticks inside the range only
  const labels = [...svg.matchAll(/<text x="[\d.-]+" y="[\d.-]+" text-anchor="middle">([^<]*)<\/text>/g)].map((m) => Number(m[1]));
  assert.ok(labels.length >= 3 && labels.every((v) => v >= 0 && v <= 10), `x tick labels ${labels}`);
  assert.throws(() => scatterSvg([{ title: 'x', points: pts }], { xRange: [1, 1] }), /lo < hi/);
});

t('scatterSvg: default ranges cover all panels; subsampling caps the points per panel', () => {
  const n = 10000;
  const big = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    big[2 * i] = Math.cos(i);
    big[2 * i + 1] = Math.sin(i) * 3;
  }
  const far = Float32Array.from([20, -20]);
  const svg = scatterSvg([{ title: 'ring', points: big }, { title: 'far', points: far }], { maxPoints: 500 });
  checkXml(svg);
  const all = circles(svg);
  assert.is(all.length, 500 + 1, 'at most maxPoints in the big panel, all in the small one');
  const [fa, fb] = frames(svg);
  for (const [k, c] of all.entries()) {
    const f = k < 500 ? fa! : fb!;
    assert.ok(c.cx >= f.x && c.cx <= f.x + f.w && c.cy >= f.y && c.cy <= f.y + f.h, `point ${k} inside its frame`);
  }
  // the far point sits near the lower-right corner of the shared, 5%-padded range
  const last = all[500]!;
  assert.ok(last.cx > fb!.x + 0.9 * fb!.w && last.cy > fb!.y + 0.9 * fb!.h, `far point at ${last.cx}, ${last.cy}`);
  assert.ok(svg.length < 80000, `file stays small (${svg.length} chars)`);
});

t('scatterSvg: values colour the points', () => {
  const pts = Float32Array.from([0, 0, 1, 1, 2, 2]);
  const svg = scatterSvg([{ title: 'v', points: pts, values: [0, 0.5, 1] }]);
  const fills = circles(svg).map((c) => c.fill);
  assert.equal(fills, [viridis(0), viridis(0.5), viridis(1)]);
  assert.is(viridis(0), '#440154');
  assert.is(viridis(1), '#fde725');
  const shared = scatterSvg([{ title: 'v', points: pts, values: [0, 0.5, 1] }], { valueRange: [0, 2] });
  assert.equal(circles(shared).map((c) => c.fill), [viridis(0), viridis(0.25), viridis(0.5)]);
  assert.throws(() => scatterSvg([{ title: 'v', points: pts, values: [1, 2] }]), /2 values for 3 points/);
  assert.throws(() => scatterSvg([]), /no panels/);
});

t('lineSvg: a path per series, legend, labels, log axis with gaps', () => {
  const x = Array.from({ length: 100 }, (_, i) => i);
  const svg = lineSvg(
    [
      { name: 'bc <loss>', x, y: x.map((i) => 1 / (1 + i)) },
      { name: 'q', x, y: x.map((i) => (i === 50 ? -1 : Math.exp(-i / 10))) },
    ],
    { title: 'Training & eval', xLabel: 'step', yLabel: 'loss', logY: true },
  );
  checkXml(svg);
  const paths = [...svg.matchAll(/<path class="series" d="([^"]*)"/g)].map((m) => m[1]!);
  assert.is(paths.length, 2);
  assert.is((paths[0]!.match(/[ML]/g) ?? []).length, 100, 'every point of the first series');
  assert.is((paths[0]!.match(/M/g) ?? []).length, 1, 'one unbroken line');
  assert.is((paths[1]!.match(/M/g) ?? []).length, 2, 'the non-positive value breaks the log-scale line');
  for (const s of ['Training &amp; eval', 'bc &lt;loss&gt;', '>q<', '>step<', '>loss<']) assert.ok(svg.includes(s), `contains ${s}`);
  // log ticks are powers of ten
  const yLabels = [...svg.matchAll(/text-anchor="end" dominant-baseline="middle">([^<]*)</g)].map((m) => m[1]!);
  assert.ok(yLabels.length >= 2, `y ticks ${yLabels}`);
  for (const l of yLabels) assert.ok(Math.abs(Math.log10(Number(l)) - Math.round(Math.log10(Number(l)))) < 1e-9, `${l} is a power of ten`);
  // the line decreases: y pixel of the last point below the first
  const pts = [...paths[0]!.matchAll(/[ML]([\d.-]+),([\d.-]+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  assert.ok(pts[99]![1]! > pts[0]![1]! && pts[99]![0]! > pts[0]![0]!, 'falls to the right');
  // long series are subsampled and keep the last point
  const long = Array.from({ length: 50001 }, (_, i) => i);
  const big = lineSvg([{ name: 'l', x: long, y: long }], { maxPoints: 300 });
  const d = big.match(/<path class="series" d="([^"]*)"/)![1]!;
  assert.is((d.match(/[ML]/g) ?? []).length, 300);
  assert.throws(() => lineSvg([{ name: 'bad', x: [1, 2], y: [1] }]), /2 x and 1 y/);
});

t('lineSvg: the legend sits right of the plot, never on a line; short series show their points', () => {
  const long = { name: 'a long series name', x: [...Array(50).keys()], y: [...Array(50).keys()].map((i) => Math.sin(i)) };
  const two = { name: 'two', x: [0, 49], y: [0.5, -0.5] };
  const svg = lineSvg([long, two], { width: 640, height: 300 });
  const frame = /<rect[^>]*x="([\d.]+)"[^>]*width="([\d.]+)"/.exec(svg);
  const right = frame ? Number(frame[1]) + Number(frame[2]) : Math.max(...[...svg.matchAll(/class="series" d="([^"]+)"/g)].flatMap((m) => [...m[1]!.matchAll(/[ML]([\d.]+),/g)].map((p) => Number(p[1]))));
  const legendX = [...svg.matchAll(/<g class="legend"[^>]*><path d="M([\d.]+),/g)].map((m) => Number(m[1]));
  assert.is(legendX.length, 2);
  for (const x of legendX) assert.ok(x > right, `legend at x ${x}, plot ends at ${right}`);
  const markers = [...svg.matchAll(/<g class="markers"[^>]*>(.*?)<\/g>/g)];
  assert.is(markers.length, 1, 'only the two-point series is marked');
  assert.is((markers[0]![1]!.match(/<circle/g) ?? []).length, 2);
});

t('ticks and labels', () => {
  assert.equal(niceTicks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
  assert.equal(niceTicks(-1.05, 1.05, 4), [-1, -0.5, 0, 0.5, 1]);
  assert.equal(niceTicks(0.1, 0.4, 3), [0.1, 0.2, 0.3, 0.4]);
  assert.is(formatTick(0.30000000000000004), '0.3');
  assert.is(formatTick(1e-5), '1.0e-5');
  assert.is(formatTick(250000), '2.5e5');
  assert.is(escapeXml(`<a & 'b'>`), '&lt;a &amp; &apos;b&apos;&gt;');
});

t.run();
