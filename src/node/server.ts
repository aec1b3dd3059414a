/**
 * A Vite dev server on localhost that serves the engine's TypeScript to the headless browser
 * (WebGPU needs a secure context, which localhost is) plus named files from disk, such as
 * the dataset, under `/files/<name>`.
 */
import { createReadStream, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer, type ViteDevServer } from 'vite';

export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));

export interface PageServer {
  url: string;
  /** Makes a file on disk (a path) or bytes in memory available at `${url}/files/${name}`. */
  serveFile(name: string, source: string | Uint8Array): string;
  close(): Promise<void>;
}

export async function startServer(): Promise<PageServer> {
  const files = new Map<string, string | Uint8Array>();
  const server: ViteDevServer = await createServer({
    root: projectRoot,
    configFile: fileURLToPath(new URL('../../vite.config.ts', import.meta.url)),
    logLevel: 'error',
    clearScreen: false,
    server: { host: '127.0.0.1', port: 0, hmr: false, watch: null },
    optimizeDeps: { noDiscovery: true, include: [] },
    plugins: [
      {
        name: 'webgpu-vae-files',
        configureServer(s) {
          s.middlewares.use((req, res, next) => {
            const match = /^\/files\/([^?]+)/.exec(req.url ?? '');
            const source = match && files.get(decodeURIComponent(match[1]));
            if (!source) return next();
            res.setHeader('Content-Type', 'application/octet-stream');
            if (typeof source === 'string') {
              res.setHeader('Content-Length', String(statSync(source).size));
              createReadStream(source).pipe(res);
            } else {
              res.setHeader('Content-Length', String(source.byteLength));
              res.end(source);
            }
          });
        },
      },
    ],
  });
  await server.listen();
  const address = server.httpServer?.address();
  if (!address || typeof address === 'string') throw new Error('Vite did not report its port');
  const url = `http://127.0.0.1:${address.port}`;
  return {
    url,
    serveFile(name, source) {
      files.set(name, source);
      return `${url}/files/${encodeURIComponent(name)}`;
    },
    close: () => server.close(),
  };
}
