// Reads uvu's output on stdin and prints one line "N passed, M failed"; exits 1 if anything failed or if the
// run did not reach its summary.
let text = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) text += chunk;
const clean = text.replace(/\x1b\[[0-9;]*m/g, '');
const total = /Total:\s+(\d+)/.exec(clean);
const passed = /Passed:\s+(\d+)/.exec(clean);
if (!total || !passed) {
  console.log('0 passed, 1 failed');
  console.error('test-summary: the test run ended before printing its summary');
  process.exit(1);
}
const p = Number(passed[1]);
const f = Number(total[1]) - p;
const skipped = Number(/Skipped:\s+(\d+)/.exec(clean)?.[1] ?? 0);
if (skipped > 0) console.log(`${skipped} skipped (see the test output for why)`);
console.log(`${p} passed, ${f} failed`);
process.exit(f > 0 ? 1 : 0);
