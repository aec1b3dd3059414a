/** nn.ReLU(): y = max(x, 0); folded into the product before it, its backward into the next dX. */
import type { ActivationUnit } from './unit';

export const relu: ActivationUnit<readonly []> = {
  kind: 'ReLU',
  role: 'activation',
  arity: [0, 0],
  args: () => [],
  outShape: (_, input) => input,
  epilogue: () => ({}),
};
