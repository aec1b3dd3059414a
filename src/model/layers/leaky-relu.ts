/**
 * nn.LeakyReLU(negative_slope=0.01): y = x > 0 ? x : slope·x, the slope rounded to float32 as
 * PyTorch keeps it. Its backward reads the output, as the ReLU's does (y > 0 exactly where
 * x > 0), which holds for a slope ≥ 0 only; a negative slope is refused.
 */
import type { ActivationUnit } from './unit';

export const leakyRelu: ActivationUnit<readonly [negativeSlope: number]> = {
  kind: 'LeakyReLU',
  role: 'activation',
  arity: [0, 1],
  args: ([slope = 0.01]) =>
    typeof slope === 'number' && Number.isFinite(slope) && slope >= 0 && Math.fround(slope) !== Infinity
      ? [slope]
      : `negative_slope must be a finite number ≥ 0 (the backward reads the output), got ${JSON.stringify(slope)}`,
  outShape: (_, input) => input,
  epilogue: ([slope]) => ({ slope: Math.fround(slope) }),
};
