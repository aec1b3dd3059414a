/** Every layer kind a model spec may name, one line each, under PyTorch's class name. */
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
} as const satisfies Record<string, LayerUnit>;

export type LayerKind = keyof typeof LAYERS;

export function layerUnit(kind: string): LayerUnit | undefined {
  return Object.hasOwn(LAYERS, kind) ? (LAYERS[kind as LayerKind] as LayerUnit) : undefined;
}
