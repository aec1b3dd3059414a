import { launchBrowser } from '../src/node/browser';
import { startServer } from '../src/node/server';
const b = await launchBrowser(); const s = await startServer();
const page = await b.browser.newPage();
page.on('console', (m) => console.log('[page]', m.text()));
await page.goto(s.url + '/bench/page.html');
await page.waitForFunction(() => 'bench' in window);
const cases = JSON.parse(process.argv[2]);
for (const c of cases) {
  const r = await page.evaluate((c) => (c.TM ? window.bench.exp(c) : window.bench.matmul(c)), c);
  console.log(JSON.stringify(c), r.median.toFixed(3), 'ms', r.gflops.toFixed(2), 'GFLOP/s', r.source);
}
await b.close(); await s.close();
