import { launchBrowser } from '../src/node/browser';
import { startServer } from '../src/node/server';
const b = await launchBrowser(); const s = await startServer();
const page = await b.browser.newPage();
await page.goto(s.url + '/bench/page.html');
await page.waitForFunction(() => 'bench' in window);
const r = await page.evaluate(() => window.bench.step({ batchSize: 128, reps: 3, samples: 3 }));
let sum = 0;
for (const d of r.perDispatch) { sum += d.median; console.log(d.label.padEnd(30), d.median.toFixed(3)); }
console.log('sum', sum.toFixed(2), 'whole', r.whole.median.toFixed(2), r.whole.source);
await b.close(); await s.close();
