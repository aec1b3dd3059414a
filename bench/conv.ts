/**
 * The conv preset's convolution products at batch 128 on MNIST (1×28×28 → 32×14×14 → 64×7×7 and
 * the transposes back), each under the adapter's own plan: its tile, its launch (invocations),
 * and GFLOP/s (useful FLOPs: 2 per multiply-add of the layer, the zero taps of a stride not
 * counted) as the median of 5 timed spans after a warm-up, with the spread.
 *
 *   npx tsx bench/conv.ts [lavapipe|swiftshader]     (Node + Dawn over that Vulkan driver)
 */
import { convInvocations, convProductShape, type ConvGeometry } from '../shaders/conv.wgsl';
import { chooseConv } from '../src/gpu/conv-plan';
import { convGeometry, convOp, productOf, type ConvLayer, type ConvPass } from '../src/gpu/conv-ops';
import { Gpu } from '../src/gpu/device';
import { spanTimer } from '../src/gpu/timing';
import { nodeWebGpu, type VulkanDriver } from '../src/node/webgpu';

const BATCH = 128;
const conv = (inC: number, outC: number): ConvLayer => ({
  transpose: false,
  inC,
  outC,
  kernel: 4,
  stride: 2,
  padding: 1,
  outputPadding: 0,
});
const LAYERS: [name: string, layer: ConvLayer, H: number][] = [
  ['encoder.0 Conv2d(1,32,4,2,1)', conv(1, 32), 28],
  ['encoder.2 Conv2d(32,64,4,2,1)', conv(32, 64), 14],
  ['decoder.5 ConvTranspose2d(64,32,4,2,1)', { ...conv(64, 32), transpose: true }, 7],
  ['decoder.7 ConvTranspose2d(32,1,4,2,1)', { ...conv(32, 1), transpose: true }, 14],
];

async function main() {
  const driver = (process.argv[2] ?? 'lavapipe') as VulkanDriver;
  const { gpu: entry, adapter } = await nodeWebGpu(driver);
  const gpu = await Gpu.create({ gpu: entry });
  const plan = gpu.defaultPlan;
  const timer = spanTimer(gpu);
  console.log(`adapter: ${adapter} [Node + Dawn, ${driver}], plan ${plan.kind}, clock ${timer.clock}, batch ${BATCH}`);
  // One set of scratch buffers for every product: the largest image is 128×32×14×14 floats.
  const scratch = (label: string) => gpu.buffer(label, 4 * BATCH * 32 * 14 * 14);
  const [a, b, out, small] = [scratch('a'), scratch('b'), scratch('out'), gpu.buffer('small', 4 * 64)];
  for (const [name, layer, H] of LAYERS) {
    const input = { batch: BATCH, H, W: H };
    const g: ConvGeometry = convGeometry(layer, input);
    for (const pass of ['forward', 'dX', 'dW'] as ConvPass[]) {
      const product = productOf(layer, pass);
      const tile = chooseConv(plan, product, g);
      const buffers =
        pass === 'forward'
          ? { X: a, W: b, Y: out, bias: small }
          : pass === 'dX'
            ? { dY: a, W: b, dX: out, mask: b }
            : { dY: a, X: b, dW: out, db: small };
      const dispatches = await convOp(gpu, `${name} ${pass}`, layer, input, pass, buffers as never, {
        mask: pass === 'dX' ? 'relu' : 'none',
      });
      const flops = dispatches[0]!.cost.flops!;
      await timer.time(dispatches, 1);
      const ms: number[] = [];
      for (let r = 0; r < 5; r++) ms.push(await timer.time(dispatches, 2));
      ms.sort((x, y) => x - y);
      const rate = (t: number) => (2 * flops) / (t * 1e6);
      const { rows, cols, K } = convProductShape(product, g);
      console.log(
        `${name} ${pass.padEnd(7)} ${product.padEnd(6)} ${rows}×${cols}×${K} tile ${tile.tileM}×${tile.tileN}` +
          `${tile.slices > 1 ? ` K/${tile.slices}` : ''} invocations ${convInvocations({ ...tile, product }, g)}: ` +
          `${rate(ms[2]!).toFixed(2)} GFLOP/s (${rate(ms[4]!).toFixed(2)}–${rate(ms[0]!).toFixed(2)}), ${(ms[2]! / 2).toFixed(2)} ms`,
      );
    }
  }
  timer.destroy();
  process.exit(0);
}

void main();
