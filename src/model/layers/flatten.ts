/** nn.Flatten(start_dim=1, end_dim=-1): dims start…end (of the batched tensor) as one. A view. */
import { batchedDim, numel, shapeText, type ViewUnit } from './unit';

export const flatten: ViewUnit<readonly [startDim: number, endDim: number]> = {
  kind: 'Flatten',
  role: 'view',
  arity: [0, 2],
  args: ([start = 1, end = -1]) =>
    Number.isInteger(start) && Number.isInteger(end)
      ? [start as number, end as number]
      : `start_dim and end_dim must be whole numbers, got ${start}, ${end}`,
  outShape([start, end], input) {
    const rank = input.length + 1;
    const s = batchedDim(start, rank);
    const e = batchedDim(end, rank);
    if (s < 1 || e < s)
      return `flattens dims ${start}…${end} of a batch of ${shapeText(input)}: they must lie after the batch dim, in order`;
    const dims = [0, ...input];
    return [...dims.slice(1, s), numel(dims.slice(s, e + 1)), ...dims.slice(e + 1)];
  },
};
