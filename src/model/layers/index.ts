/** Every layer kind a model spec may name, one line each, under PyTorch's class name. */
import { batchNorm2d } from './batchnorm2d';
import { conv2d } from './conv2d';
import { convTranspose2d } from './conv-transpose2d';
import { flatten } from './flatten';
import { leakyRelu } from './leaky-relu';
import { linear } from './linear';
import { relu } from './relu';
import { unflatten } from './unflatten';
import type { LayerUnit } from './unit';

export const LAYERS = {
  Linear: linear,
  ReLU: relu,
  LeakyReLU: leakyRelu,
  Flatten: flatten,
  Unflatten: unflatten,
  Conv2d: conv2d,
  ConvTranspose2d: convTranspose2d,
  BatchNorm2d: batchNorm2d,
} as const satisfies Record<string, LayerUnit>;

export type LayerKind = keyof typeof LAYERS;

export function layerUnit(kind: string): LayerUnit | undefined {
  return Object.hasOwn(LAYERS, kind) ? (LAYERS[kind as LayerKind] as LayerUnit) : undefined;
}
