/**
 * Labels for a conditional VAE (VaeSizes.classes): what every host checks before the labels go
 * to the GPU, so a bad label is refused with the image it belongs to instead of becoming an
 * all-zero one-hot in the gather. Hosts get labels from idx label files (MNIST, Fashion-MNIST,
 * --data) or from folder names; these functions only see numbers.
 */

/**
 * Classes a labelled dataset has: one more than its largest label (0 … C−1), over every split
 * given. The class count of a conditional VAE in every host (the CLI and the page count the same
 * idx files alike); a host's class names beyond it are not shown, a class without a name is its number.
 */
export function classCountOf(...splits: (ArrayLike<number> | undefined)[]): number {
  let max = -1;
  for (const labels of splits) for (let i = 0; i < (labels?.length ?? 0); i++) max = Math.max(max, labels![i]!);
  return max + 1;
}

/**
 * The reason `labels` cannot condition a VAE on `classes` classes — none given, fewer than the
 * images, or a label outside 0 … C−1 — or null. `what` names the split in the message.
 */
export function labelsReason(
  what: string,
  labels: ArrayLike<number> | undefined,
  count: number,
  classes: number,
): string | null {
  if (!labels) return `a conditional VAE trains on labelled images, and the ${count} ${what} images have no labels`;
  if (labels.length < count) return `${labels.length} ${what} labels for ${count} images: every image needs its class`;
  for (let i = 0; i < count; i++) {
    const y = labels[i]!;
    if (!Number.isInteger(y) || y < 0 || y >= classes) {
      return `${what} image ${i} has label ${y}, outside 0 … ${classes - 1} for a model of ${classes} classes`;
    }
  }
  return null;
}

/** The label of each row of a per-class grid: `perClass` rows of class 0, then of class 1, … */
export function gridLabels(classes: number, perClass: number): Uint32Array {
  return Uint32Array.from({ length: classes * perClass }, (_, i) => Math.floor(i / perClass));
}
