/**
 * Checkpoint files: Download saves the session as `.safetensors` (the weights under PyTorch's
 * names, and the Adam state); a picked file becomes the session once it has been checked.
 */
import { sizesName, type VaeSizes } from '../model/graph';
import { failed, type App } from './app';
import { chosenDataset, showDatasetChoice } from './dataset-choice';
import { checkpointBytes, createSession, epochOf, readCheckpoint, settingsFor } from './engine';
import { choiceName, type ModelChoice } from './model-picker';
import { showModel } from './model-views';
import { saveLatest } from './saved-run';

/** A model as file names and messages say it: an mlp by its sizes (784-400-20), a spec model by its preset, or "custom" (the picker shows its spec). */
function modelName(sizes: VaeSizes, choice: ModelChoice): string {
  return sizes.spec ? choiceName(choice) : sizesName(sizes);
}

export function wireCheckpointFiles(app: App): void {
  const { el, state, say } = app;

  el.download.addEventListener('click', async () => {
    const s = state.session;
    if (!s) return;
    try {
      const bytes = await checkpointBytes(s);
      const name = `vae-${s.dataset.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${modelName(s.model.config.sizes, s.choice)}-epoch${s.epochsDone}.safetensors`;
      const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/octet-stream' }));
      const a = Object.assign(document.createElement('a'), { href: url, download: name });
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      say(
        `Downloaded ${name} (${(bytes.byteLength / 1e6).toFixed(1)} MB: the weights under PyTorch's names, and the Adam state).`,
      );
    } catch (e) {
      say(`Download failed: ${(e as Error).message}`, 'error');
    }
  });

  el.checkpointFile.addEventListener('change', async () => {
    const file = el.checkpointFile.files?.[0];
    el.checkpointFile.value = '';
    if (!file || state.phase !== 'ready') return;
    state.phase = 'busy';
    app.updateButtons();
    say(`Reading ${file.name}…`);
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const { ckpt, dataset } = await readCheckpoint(
        app.controls,
        bytes,
        async () => state.session?.dataset ?? chosenDataset(app),
      );
      const epoch = epochOf(ckpt);
      const session = (state.session = await createSession(app, dataset, settingsFor(app.controls, ckpt), ckpt, epoch));
      app.chart.clear();
      await session.trainer.testPass();
      await showModel(app, session);
      showDatasetChoice(app);
      const loaded = `Loaded ${file.name}: a ${modelName(ckpt.sizes, session.choice)} model after ${epoch} epoch${epoch === 1 ? '' : 's'} (${ckpt.step} steps)${typeof session.choice === 'string' ? '' : '; its spec is shown under Model'}.`;
      const stored = state.stored;
      if (stored === null) {
        say(`${loaded} Continue trains it further.`);
        await saveLatest(app, session); // into empty storage: nothing is replaced
      } else {
        // Opening a file to look at it must not replace the run kept in storage: the loaded model
        // takes its place only when it completes an epoch, and the page says so.
        const kept =
          stored === 'unrestorable'
            ? 'the record this page could not restore'
            : `the run saved after epoch ${stored.epoch}`;
        el.saved.textContent =
          `${file.name} is not saved in this browser: storage keeps ${kept}` +
          `${stored === 'unrestorable' ? ' (Reset deletes it)' : ', which a reload restores,'} until this model completes an epoch.`;
        say(
          `${loaded} It is not saved in this browser: storage keeps ${kept} until Continue completes an epoch of this model.`,
        );
      }
    } catch (e) {
      say(`Could not load ${file.name}: ${(e as Error).message}. Nothing was changed.`, 'error');
    } finally {
      if (!failed(app)) state.phase = 'ready';
      app.updateButtons();
    }
  });
}
