/** nn.Unflatten(dim, unflattened_size): dim (of the batched tensor) as the given sizes. A view. */
import { batchedDim, numel, shapeText, whole, type ViewUnit } from './unit';

export const unflatten: ViewUnit<readonly [dim: number, sizes: readonly number[]]> = {
  kind: 'Unflatten',
  role: 'view',
  arity: [2, 2],
  args: ([dim, sizes]) =>
    Number.isInteger(dim) && Array.isArray(sizes) && sizes.length > 0 && sizes.every((v) => whole(v, 1, 2 ** 31))
      ? [dim as number, sizes as number[]]
      : `takes a dim and a list of sizes, e.g. ["Unflatten", 1, [1, 28, 28]]; got ${JSON.stringify([dim, sizes])}`,
  outShape([dim, sizes], input) {
    const d = batchedDim(dim, input.length + 1);
    if (d < 1) return `dim ${dim} must name a dim after the batch dim of a batch of ${shapeText(input)}`;
    if (numel(sizes) !== input[d - 1])
      return `unflattens dim ${dim} (${input[d - 1]}) of ${shapeText(input)} into ${shapeText(sizes)}, of ${numel(sizes)}`;
    return [...input.slice(0, d - 1), ...sizes, ...input.slice(d)];
  },
};
