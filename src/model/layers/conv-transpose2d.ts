/**
 * nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=1, padding=0,
 * output_padding=0) on NCHW images, weight (in, out, k, k) as PyTorch stores it: the gradient of
 * a Conv2d's input, run by the same emitters (./conv2d.ts).
 */
import { convUnit } from './conv2d';

export const convTranspose2d = convUnit(true);
