/**
 * The latent-space explorer. The test set's first SCATTER_COUNT images are encoded to their
 * means; a plane through the latent space is chosen — two latent axes (for a 2-D latent, the
 * latent itself) or the first two principal directions of those means — and the means are
 * drawn on it coloured by label. Dragging on the plane decodes the point under the pointer;
 * a strip decodes the straight line between two test digits' means.
 *
 * A conditional model encodes each test image with its own label, q(z | x, y), and decodes
 * with the class picked in "Decode as class": the same z drawn as another digit.
 *
 * All encodes and decodes go through one queue: Inference's buffers are shared between calls.
 */
import type { Inference } from '../model/inference';
import { drawGrid } from './charts';
import { valuesPerImage, type Split } from './data';

/** Test images encoded for the scatter and the principal directions. */
export const SCATTER_COUNT = 2000;
/** Decodes between the two chosen digits (ends included). */
export const INTERP_STEPS = 10;

// A categorical palette that stays distinguishable for ten classes.
const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];

export interface ExplorerSource {
  inference: Inference;
  latent: number;
  rows: number;
  cols: number;
  /** 1, or 3 for planar R, G, B (absent: 1). */
  channels?: number;
  test: Split;
  classNames: string[];
  /** A conditional model's classes (0: unconditional); its test split then has labels. */
  classes: number;
}

type Vec = Float64Array;

export class Explorer {
  private source: ExplorerSource | null = null;
  /** (n, L) means of the first n test images. */
  private means = new Float32Array(0);
  private n = 0;
  /** z = center + a·u + b·v for the plane point (a, b). */
  private center: Vec = new Float64Array(0);
  private u: Vec = new Float64Array(0);
  private v: Vec = new Float64Array(0);
  /** The plane shows a, b in [−extent, extent]. */
  private extent = 3;
  private point: [number, number] = [0, 0];
  private queue: Promise<unknown> = Promise.resolve();
  private decodeBusy = false;
  private decodeAgain = false;
  private readonly el: Record<'plane' | 'decoded' | 'strip', HTMLCanvasElement> &
    Record<'mode' | 'axisX' | 'axisY', HTMLSelectElement> &
    Record<'interpA' | 'interpB', HTMLInputElement> &
    Record<'legend' | 'readout' | 'count' | 'panel' | 'placeholder', HTMLElement> & {
      classPick: HTMLSelectElement;
      classRow: HTMLElement;
    };

  constructor(private readonly onError: (e: Error) => void) {
    const $ = (id: string) => document.getElementById(id)!;
    this.el = {
      plane: $('plane') as HTMLCanvasElement,
      decoded: $('decoded') as HTMLCanvasElement,
      strip: $('interp-strip') as HTMLCanvasElement,
      mode: $('plane-mode') as HTMLSelectElement,
      axisX: $('axis-x') as HTMLSelectElement,
      axisY: $('axis-y') as HTMLSelectElement,
      interpA: $('interp-a') as HTMLInputElement,
      interpB: $('interp-b') as HTMLInputElement,
      legend: $('legend'),
      readout: $('plane-readout'),
      count: $('scatter-count'),
      panel: $('explorer-body'),
      placeholder: $('explorer-placeholder'),
      classPick: $('explorer-class') as HTMLSelectElement,
      classRow: $('explorer-class-row'),
    };
    this.el.classPick.addEventListener('change', () => {
      void this.decodePoint();
      void this.interpolate();
    });
    const { plane } = this.el;
    const pick = (e: PointerEvent) => {
      const r = plane.getBoundingClientRect();
      const a = (((e.clientX - r.left) / r.width) * 2 - 1) * this.extent;
      const b = (1 - ((e.clientY - r.top) / r.height) * 2) * this.extent;
      this.point = [clamp(a, this.extent), clamp(b, this.extent)];
      this.drawPlane();
      void this.decodePoint();
    };
    plane.addEventListener('pointerdown', (e) => {
      if (!this.source) return;
      plane.setPointerCapture(e.pointerId);
      pick(e);
    });
    plane.addEventListener('pointermove', (e) => {
      if (plane.hasPointerCapture(e.pointerId)) pick(e);
    });
    const replane = () => {
      this.el.axisX.parentElement!.hidden = this.el.mode.value !== 'axes';
      this.point = [0, 0];
      void this.refreshPlane();
    };
    this.el.mode.addEventListener('change', replane);
    this.el.axisX.addEventListener('change', replane);
    this.el.axisY.addEventListener('change', replane);
    for (const input of [this.el.interpA, this.el.interpB])
      input.addEventListener('change', () => void this.interpolate());
  }

  /** A new model (or none): the views wait for `refresh()`. */
  attach(source: ExplorerSource | null): void {
    this.source = source;
    this.n = 0;
    this.el.panel.hidden = true;
    this.el.placeholder.hidden = false;
    if (!source) return;
    const options = Array.from({ length: source.latent }, (_, i) => `<option value="${i}">z${i}</option>`).join('');
    this.el.axisX.innerHTML = options;
    this.el.axisY.innerHTML = options;
    this.el.axisY.value = '1';
    if (source.latent === 2) this.el.mode.value = 'axes';
    this.el.axisX.parentElement!.hidden = this.el.mode.value !== 'axes';
    this.el.interpA.max = this.el.interpB.max = String(source.test.count - 1);
    this.el.classRow.hidden = source.classes === 0;
    this.el.classPick.innerHTML = Array.from(
      { length: source.classes },
      (_, k) => `<option value="${k}">${escapeHtml(source.classNames[k] ?? String(k))}</option>`,
    ).join('');
    const colors = source.test.labels
      ? source.classNames.map(
          (name, i) => `<span><i style="background:${PALETTE[i % PALETTE.length]}"></i>${escapeHtml(name)}</span>`,
        )
      : ['(no test labels: one colour)'];
    this.el.legend.innerHTML = colors.join('');
  }

  /** Re-encodes the test means with the current weights and redraws every view. */
  async refresh(): Promise<void> {
    const s = this.source;
    if (!s) return;
    const D = valuesPerImage(s);
    const n = Math.min(SCATTER_COUNT, s.test.count);
    const images = toFloats(s.test.pixels.subarray(0, n * D));
    const mulv = await this.serial(() => s.inference.encode(images, n, this.ownLabels(s, 0, n)));
    if (s !== this.source) return; // replaced meanwhile
    const L = s.latent;
    this.means = new Float32Array(n * L);
    for (let r = 0; r < n; r++) this.means.set(mulv.subarray(r * 2 * L, r * 2 * L + L), r * L);
    this.n = n;
    this.el.count.textContent = n.toLocaleString('en');
    this.el.panel.hidden = false;
    this.el.placeholder.hidden = true;
    await this.refreshPlane();
    await this.interpolate();
  }

  private async refreshPlane(): Promise<void> {
    if (!this.source || this.n === 0) return;
    const L = this.source.latent;
    const centroid = new Float64Array(L);
    for (let r = 0; r < this.n; r++) for (let j = 0; j < L; j++) centroid[j] += this.means[r * L + j] / this.n;
    if (this.el.mode.value === 'axes') {
      const i = Number(this.el.axisX.value);
      const j = Number(this.el.axisY.value);
      this.u = unit(L, i);
      this.v = unit(L, j);
      // The chosen coordinates are shown as they are; the others sit at the means' centroid.
      this.center = centroid.slice();
      this.center[i] = 0;
      this.center[j] = 0;
    } else {
      [this.u, this.v] = principalDirections(this.means, this.n, L, centroid);
      this.center = centroid;
    }
    let spread = 0;
    for (let r = 0; r < this.n; r++) {
      const [a, b] = this.project(r);
      spread = Math.max(spread, Math.abs(a), Math.abs(b));
    }
    this.extent = Math.max(1, 1.05 * spread);
    this.drawPlane();
    await this.decodePoint();
  }

  private project(r: number): [number, number] {
    const L = this.source!.latent;
    let a = 0,
      b = 0;
    for (let j = 0; j < L; j++) {
      const d = this.means[r * L + j] - this.center[j];
      a += d * this.u[j];
      b += d * this.v[j];
    }
    return [a, b];
  }

  private latentAt(a: number, b: number): Float32Array {
    const z = new Float32Array(this.center.length);
    for (let j = 0; j < z.length; j++) z[j] = this.center[j] + a * this.u[j] + b * this.v[j];
    return z;
  }

  private drawPlane(): void {
    const s = this.source;
    if (!s) return;
    const canvas = this.el.plane;
    const size = 360;
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext('2d')!;
    const X = (a: number) => ((a / this.extent + 1) / 2) * size;
    const Y = (b: number) => ((1 - b / this.extent) / 2) * size;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, size, size);
    ctx.strokeStyle = '#dde';
    ctx.beginPath();
    ctx.moveTo(X(0), 0);
    ctx.lineTo(X(0), size);
    ctx.moveTo(0, Y(0));
    ctx.lineTo(size, Y(0));
    ctx.stroke();
    ctx.globalAlpha = 0.65;
    for (let r = 0; r < this.n; r++) {
      const [a, b] = this.project(r);
      const label = s.test.labels?.[r];
      ctx.fillStyle = label === undefined ? '#555' : PALETTE[label % PALETTE.length];
      ctx.fillRect(X(a) - 1.5, Y(b) - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
    // The interpolation's end points, when they are among the plotted digits.
    const ends = [Number(this.el.interpA.value), Number(this.el.interpB.value)]
      .filter((i) => i < this.n)
      .map((i) => this.project(i));
    ctx.strokeStyle = '#222';
    ctx.lineWidth = 1.5;
    if (ends.length === 2) {
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(X(ends[0][0]), Y(ends[0][1]));
      ctx.lineTo(X(ends[1][0]), Y(ends[1][1]));
      ctx.stroke();
      ctx.setLineDash([]);
    }
    for (const [a, b] of ends) ctx.strokeRect(X(a) - 4, Y(b) - 4, 8, 8);
    const [a, b] = this.point;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(X(a), Y(b), 7, 0, 2 * Math.PI);
    ctx.moveTo(X(a) - 11, Y(b));
    ctx.lineTo(X(a) + 11, Y(b));
    ctx.moveTo(X(a), Y(b) - 11);
    ctx.lineTo(X(a), Y(b) + 11);
    ctx.stroke();
    ctx.lineWidth = 1;
    const axes =
      this.el.mode.value === 'axes' ? [`z${this.el.axisX.value}`, `z${this.el.axisY.value}`] : ['pc1', 'pc2'];
    this.el.readout.textContent = `${axes[0]} = ${a.toFixed(2)}, ${axes[1]} = ${b.toFixed(2)}`;
  }

  /** Decodes the plane point; drags faster than the GPU coalesce into the latest point. */
  private async decodePoint(): Promise<void> {
    const s = this.source;
    if (!s || this.n === 0) return;
    if (this.decodeBusy) {
      this.decodeAgain = true;
      return;
    }
    this.decodeBusy = true;
    try {
      do {
        this.decodeAgain = false;
        const z = this.latentAt(...this.point);
        const image = await this.serial(() => s.inference.decode(z, 1, this.picked(s, 1)));
        if (s === this.source) drawGrid(this.el.decoded, image, 1, s.rows, s.cols, 1, s.channels);
      } while (this.decodeAgain);
    } catch (e) {
      this.onError(e as Error);
    } finally {
      this.decodeBusy = false;
    }
  }

  /** Test digit A, INTERP_STEPS decodes from A's mean to B's, then test digit B. */
  private async interpolate(): Promise<void> {
    const s = this.source;
    if (!s || this.n === 0) return;
    const D = valuesPerImage(s);
    const L = s.latent;
    const index = (input: HTMLInputElement) => {
      const i = Number(input.value);
      const ok = Number.isInteger(i) && i >= 0 && i < s.test.count;
      input.setCustomValidity(ok ? '' : `a test image index from 0 to ${s.test.count - 1}`);
      return ok ? i : null;
    };
    const a = index(this.el.interpA);
    const b = index(this.el.interpB);
    if (a === null || b === null) return;
    try {
      const ends = toFloats(
        new Uint8Array([...s.test.pixels.subarray(a * D, (a + 1) * D), ...s.test.pixels.subarray(b * D, (b + 1) * D)]),
      );
      const labels = s.classes > 0 ? [s.test.labels![a]!, s.test.labels![b]!] : undefined;
      const mulv = await this.serial(() => s.inference.encode(ends, 2, labels));
      const z = new Float32Array(INTERP_STEPS * L);
      for (let k = 0; k < INTERP_STEPS; k++) {
        const t = k / (INTERP_STEPS - 1);
        for (let j = 0; j < L; j++) z[k * L + j] = (1 - t) * mulv[j] + t * mulv[2 * L + j];
      }
      const decoded = await this.serial(() => s.inference.decode(z, INTERP_STEPS, this.picked(s, INTERP_STEPS)));
      if (s !== this.source) return;
      const strip = new Float32Array((INTERP_STEPS + 2) * D);
      strip.set(ends.subarray(0, D));
      strip.set(decoded, D);
      strip.set(ends.subarray(D), (INTERP_STEPS + 1) * D);
      drawGrid(this.el.strip, strip, INTERP_STEPS + 2, s.rows, s.cols, INTERP_STEPS + 2, s.channels);
      this.drawPlane();
    } catch (e) {
      this.onError(e as Error);
    }
  }

  /** Test labels first … first+n−1, for a conditional model's encoder (undefined otherwise). */
  private ownLabels(s: ExplorerSource, first: number, n: number): Uint8Array | undefined {
    return s.classes > 0 ? s.test.labels!.subarray(first, first + n) : undefined;
  }

  /** The picked class for `n` decodes of a conditional model (undefined otherwise). */
  private picked(s: ExplorerSource, n: number): Uint32Array | undefined {
    return s.classes > 0 ? new Uint32Array(n).fill(Number(this.el.classPick.value) || 0) : undefined;
  }

  /** Runs `task` in the explorer's queue: for the page's other users of the same Inference. */
  serial<T>(task: () => Promise<T>): Promise<T> {
    const result = this.queue.then(task);
    this.queue = result.catch(() => {});
    return result;
  }
}

function clamp(x: number, r: number): number {
  return Math.max(-r, Math.min(r, x));
}

function unit(n: number, i: number): Vec {
  const v = new Float64Array(n);
  v[i] = 1;
  return v;
}

function toFloats(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] / 255;
  return out;
}

/**
 * The two leading eigenvectors of the means' covariance (L×L, small) by power iteration with
 * deflation. Signs are fixed (largest component positive) so the plane does not flip between
 * epochs.
 */
export function principalDirections(means: Float32Array, n: number, L: number, centroid: Vec): [Vec, Vec] {
  const cov = new Float64Array(L * L);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < L; i++) {
      const di = means[r * L + i] - centroid[i];
      for (let j = 0; j < L; j++) cov[i * L + j] += (di * (means[r * L + j] - centroid[j])) / n;
    }
  }
  const leading = (): Vec => {
    let v = Float64Array.from({ length: L }, (_, i) => 1 + i / L);
    for (let it = 0; it < 200; it++) {
      const w = new Float64Array(L);
      for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) w[i] += cov[i * L + j] * v[j];
      const norm = Math.hypot(...w);
      if (norm === 0) return unit(L, 0);
      v = w.map((x) => x / norm);
    }
    let big = 0;
    for (let i = 1; i < L; i++) if (Math.abs(v[i]) > Math.abs(v[big])) big = i;
    return v[big] < 0 ? v.map((x) => -x) : v;
  };
  const first = leading();
  let lambda = 0;
  for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) lambda += first[i] * cov[i * L + j] * first[j];
  for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) cov[i * L + j] -= lambda * first[i] * first[j];
  let second = leading();
  // A degenerate spread (all means equal) leaves no second direction: take any orthogonal one.
  if (Math.abs(second.reduce((s, x, i) => s + x * first[i], 0)) > 0.5) second = unit(L, first[0] === 0 ? 0 : 1);
  return [first, second];
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}
