/**
 * `npm run train` among other processes, measured from outside: two runs into one --out, the
 * local server as any other process on the machine (or a rebinding web page) sees it while a
 * run trains, Ctrl-C once and twice, names and metadata with control characters, a tune cache
 * that cannot be written, and the soak reports of two runs.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout } from '../src/model/graph';
import { LOCK_FILE } from '../src/node/files';
import { projectRoot } from '../src/node/server';
import { fileCache } from '../src/node/tune-cache';
import { tempDir, train } from './cli';

/** tsx's loader by its path, so a run from another working folder finds it. */
const TSX_LOADER = pathToFileURL(resolve('node_modules', 'tsx', 'dist', 'loader.mjs')).href;

/** Every process a test started, killed after it even when it fails or times out. */
const started: ChildProcessWithoutNullStreams[] = [];
afterEach(() => {
  for (const child of started.splice(0)) child.kill('SIGKILL');
});

/** The CLI as one Node process (no tsx launcher in between), so its pid is the one a lock names. */
function startTrain(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string, script = 'src/cli/train.ts') {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, resolve(script), ...args], {
    env: { ...process.env, ...env },
    ...(cwd ? { cwd } : {}),
  }) as ChildProcessWithoutNullStreams;
  started.push(child);
  const run = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise<number | null>((done) => child.on('exit', (code) => done(code))),
  };
  child.stdout.on('data', (d) => {
    run.stdout += d;
  });
  child.stderr.on('data', (d) => {
    run.stderr += d;
  });
  return run;
}

/** Resolves once `text` has appeared in the run's stdout or stderr; fails if the run exits first. */
async function waitFor(run: ReturnType<typeof startTrain>, text: string | RegExp): Promise<void> {
  const seen = () =>
    typeof text === 'string' ? (run.stdout + run.stderr).includes(text) : text.test(run.stdout + run.stderr);
  let exited = false;
  void run.exited.then(() => {
    exited = true;
  });
  while (!seen()) {
    if (exited) expect.fail(`the run exited before printing ${text}:\n${run.stdout}\n${run.stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The TCP ports on 127.0.0.1 that `pid` or any process below it listens on (Linux /proc). */
function listeningPorts(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      /* ended meanwhile */
    }
  }
  const sockets = new Set<string>();
  const visit = (p: number) => {
    try {
      for (const fd of readdirSync(`/proc/${p}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`));
        if (m) sockets.add(m[1]);
      }
    } catch {
      /* ended, or not ours to read */
    }
    for (const c of children.get(p) ?? []) visit(c);
  };
  visit(pid);
  const ports: number[] = [];
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // local address 0100007F:PORT (127.0.0.1), state 0A (LISTEN), inode in field 9
    if (f.length > 9 && f[1].startsWith('0100007F:') && f[3] === '0A' && sockets.has(f[9]))
      ports.push(parseInt(f[1].split(':')[1], 16));
  }
  return ports;
}

/** A GET as any local process can send it, with the Host header it chooses. */
function get(port: number, path: string, host = `127.0.0.1:${port}`): Promise<{ status: number; body: Buffer }> {
  return new Promise((done, fail) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { Host: host } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
    });
    req.on('error', fail);
    req.end();
  });
}

describe('npm run train, among other processes', () => {
  it("takes --out for one run: a second run into it refuses, naming the first's pid, and the first completes its checkpoint", async () => {
    const out = tempDir();
    // A killed run's lock (its process is gone) does not hold the folder.
    const dead = spawnSync('true').pid!;
    writeFileSync(join(out, LOCK_FILE), `${dead}\n`);
    const args = ['--epochs', '1', '--train-limit', '256', '--out', out];
    const first = startTrain(args);
    await waitFor(first, 'webgpu-vae: MNIST on'); // trained into out from here on, before any checkpoint
    const second = startTrain(args);
    expect(await second.exited, second.stderr).toBe(2);
    expect(second.stderr).toContain(
      `webgpu-vae train: --out ${out} is in use: another run (process ${first.child.pid}) is training into it`,
    );
    expect(second.stdout).not.toMatch(/webgpu-vae: MNIST on|Train Epoch/);

    expect(await first.exited, first.stderr).toBe(0);
    const checkpoint = readSafetensors(readFileSync(join(out, 'checkpoint.safetensors')));
    expect([checkpoint.metadata.epoch, checkpoint.metadata.step]).toEqual(['1', '2']);
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
    expect(readdirSync(out).sort()).toEqual([
      'checkpoint.safetensors',
      'metrics.jsonl',
      'reconstruction_1.png',
      'sample_1.png',
    ]); // the lock went with it
  });

  it('serves the training data and the run folder to no one but its page, while training', async () => {
    // The run folder under the project, where the default results/ lies.
    const out = mkdtempSync(join(projectRoot, 'results-guard-'));
    const run = startTrain(['--epochs', '3', '--train-limit', '640', '--steps-per-submit', '1', '--out', out]);
    try {
      await waitFor(run, '====> Test set loss');
      while (!existsSync(join(out, 'checkpoint.safetensors'))) await new Promise((r) => setTimeout(r, 100));
      const ports = listeningPorts(run.child.pid!);
      expect(ports.length, 'the run listens on no port').toBeGreaterThan(0);
      let pages = 0;
      for (const port of ports) {
        // The page server answers its own address (so this is the server the page loads from)…
        if ((await get(port, '/src/cli/headless.html')).status === 200) pages++;
        // …but no data to a request without the page's token, nor to a rebinding page's Host.
        for (const path of [
          '/files/train',
          '/files/test',
          '/files/train%20labels',
          `/${relative(projectRoot, out)}/checkpoint.safetensors`,
          `/${relative(projectRoot, out)}/metrics.jsonl`,
        ]) {
          const plain = await get(port, path);
          expect([plain.status, plain.body.length > 0 && plain.status === 200], `${path} on ${port}`).not.toEqual([
            200,
            true,
          ]);
          expect(plain.status, `${path} on ${port}`).toBeGreaterThanOrEqual(400);
        }
        for (const host of ['attacker.example', `attacker.example:${port}`]) {
          const forged = await get(port, '/files/train', host);
          expect(forged.status, `Host ${host} on ${port}`).toBe(403);
          expect((await get(port, '/src/cli/headless.html', host)).status, `Host ${host} on ${port}`).toBe(403);
        }
      }
      expect(pages, `no port of ${ports.join(', ')} serves the page`).toBe(1);
      run.child.kill('SIGINT');
      expect(await run.exited, run.stderr).toBe(0); // and the page itself got its data: it trained
    } finally {
      run.child.kill('SIGKILL');
      await run.exited;
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('Ctrl-C in epoch 1 says there is no checkpoint yet, and writes none', async () => {
    const out = tempDir();
    const run = startTrain([
      '--epochs',
      '1',
      '--train-limit',
      '1280',
      '--steps-per-submit',
      '1',
      '--log-interval',
      '1',
      '--out',
      out,
    ]);
    await waitFor(run, 'Train Epoch: 1 [');
    run.child.kill('SIGINT');
    expect(await run.exited, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /webgpu-vae: stopped during epoch 1; no epoch had finished, so there is no checkpoint yet/,
    );
    expect(run.stderr).not.toMatch(/holds the last completed epoch/);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(false);
  });

  it("a second Ctrl-C quits at once, still removing the browser's temporary profile and the run's lock", async () => {
    const tmp = tempDir(); // the run's temporary folder, where its browser profile goes
    const out = tempDir();
    try {
      const run = startTrain(
        ['--epochs', '2', '--train-limit', '1280', '--steps-per-submit', '1', '--log-interval', '1', '--out', out],
        { TMPDIR: tmp },
      );
      await waitFor(run, 'Train Epoch: 1 [');
      expect(
        readdirSync(tmp).filter((n) => n.startsWith('webgpu-vae-chrome-')),
        "the browser's profile",
      ).toHaveLength(1);
      run.child.kill('SIGINT');
      await waitFor(run, 'stopping after the current submit');
      run.child.kill('SIGINT');
      expect(await run.exited, run.stderr).toBe(130);
      expect(readdirSync(tmp).filter((n) => n.startsWith('webgpu-vae-chrome-'))).toEqual([]);
      expect(readdirSync(out)).not.toContain(LOCK_FILE);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('prints checkpoint metadata and folder names without their control characters', async () => {
    const dir = tempDir();
    const layout = arenaLayout({ D: 784, hidden: [400], L: 20 });
    const checkpoint = join(dir, 'crafted.safetensors');
    // An OSC title change, a screen clear and a carriage return, in the one field the CLI quotes back.
    writeFileSync(
      checkpoint,
      encodeCheckpoint(layout, {
        params: new Float32Array(layout.length),
        step: 0,
        metadata: { epoch: '\x1b]0;owned\x07\x1b[2J\r1' },
      }),
    );
    const r = train(['--epochs', '2', '--resume', checkpoint, '--out', dir], 120_000);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('checkpoint metadata epoch "]0;owned[2J1" is not an epoch count');
    // eslint-disable-next-line no-control-regex -- what the CLI printed must hold no control characters
    expect(r.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);

    // An --images folder whose class and file names carry escapes; no file is an image, so it is refused naming them.
    const images = join(tempDir(), 'images');
    for (const cls of ['cat\x1b[31m', 'dog\x1b[8m']) {
      mkdirSync(join(images, cls), { recursive: true });
      writeFileSync(join(images, cls, 'x\x1b[2K.png'), 'not a png');
    }
    const refused = train(['--images', images, '--epochs', '1', '--out', tempDir()], 120_000);
    expect(refused.status, refused.stderr).not.toBe(0);
    expect(refused.stderr).toMatch(/cat\[31m/);
    // eslint-disable-next-line no-control-regex -- as above
    expect(refused.stdout + refused.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
  });

  // The CLI's --autotune on such a cache takes minutes of tuning on a software adapter; what failed
  // was the cache, so it is measured here through the same fileCache the CLI opens.
  it('an unwritable tune cache (its folder cannot be made, or cannot take files) is a miss that says so once, not an error', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), ''); // a file where the cache's parent folder should be: no one can make it, root included
    // /proc/self exists and takes no new files, for root too.
    for (const [folder, code] of [
      [join(dir, 'file', 'tuned-plans'), 'ENOTDIR'],
      ['/proc/self', 'E[A-Z]+'],
    ] as const) {
      const said: string[] = [];
      const cache = fileCache(folder, (m) => said.push(m));
      await cache.put('a', 'plan a');
      await cache.put('b', 'plan b');
      expect(await cache.get('a'), folder).toBeUndefined();
      expect(said, folder).toHaveLength(1);
      expect(said[0]).toMatch(
        new RegExp(`^cannot write the tune cache ${folder} \\(${code}\\): tuning without caching`),
      );
    }
  });

  it("gives each soak run its own report, so a second soak the same day keeps the first's", async () => {
    const cwd = tempDir(); // the default report goes to bench/results under the working folder
    for (let i = 0; i < 2; i++) {
      const run = startTrain(['--cycles', '1', '--every', '1', '--images', '128'], {}, cwd, 'bench/soak.ts');
      expect(await run.exited, run.stderr).toBe(0);
    }
    const reports = readdirSync(join(cwd, 'bench', 'results'));
    expect(reports, reports.join(', ')).toHaveLength(2);
    for (const name of reports) {
      expect(name).toMatch(/^soak-cycles-.+\.json$/);
      expect(JSON.parse(readFileSync(join(cwd, 'bench', 'results', name), 'utf8')).done).toBe(1);
    }
  });
});
