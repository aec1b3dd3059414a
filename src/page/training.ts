/**
 * A training run of the session, from its next epoch to the Epochs field's target (read at each
 * epoch, so it can be raised or lowered meanwhile): the driver's events become the chart, the
 * progress panel, the grids, the message line and a save after each completed epoch.
 */
import { RunGate, runTraining } from '../model/driver';
import { DEFAULT_OBJECTIVE, weightedKl } from '../model/settings';
import { failed, type App, type Session } from './app';
import { showModel } from './model-views';
import { saveLatest } from './saved-run';

export async function train(app: App, s: Session): Promise<void> {
  const { state, chart, progress, say } = app;
  state.phase = 'running';
  const run = (state.gate = new RunGate(
    () => failed(app),
    (paused) => {
      if (paused) {
        progress.meter.stop();
        say('Paused. Resume continues where training stopped; the explorer and Download work meanwhile.');
      } else {
        progress.meter.start();
      }
      app.updateButtons();
    },
  ));
  app.updateButtons();
  const n = s.dataset.train.count;
  const batches = s.model.trainBatches;
  const target = () => app.controls.read()?.epochs ?? s.settings.epochs;
  chart.truncate(s.epochsDone); // a stopped epoch's steps are trained again
  progress.startRun();
  try {
    const result = await runTraining(
      s.trainer,
      { firstEpoch: s.epochsDone + 1, lastEpoch: target, test: true, images: true },
      run,
      {
        onEpochStart(epoch, last) {
          chart.setEpochs(last);
          progress.startEpoch(epoch, last, batches, n);
          say(`Training epoch ${epoch} of ${last}…`);
        },
        onLosses(l) {
          l.losses.forEach((loss, i) => {
            const batch = l.firstBatch + i;
            const rows = s.model.rowsOf(batch, n);
            chart.addTrain(l.epoch - 1 + (batch + 1) / batches, loss / rows);
            progress.addBatch(batch, rows);
          });
        },
        async onEpoch(r) {
          progress.meter.stop();
          if (!r.completed) return;
          s.epochsDone = r.epoch;
          state.epochReports.push({ epoch: r.epoch, trainLoss: r.trainLoss, testLoss: r.test!.loss });
          progress.testSeconds = r.test!.seconds;
          chart.addTest(r.epoch, r.test!.loss);
          await showModel(app, s, r);
          await saveLatest(app, s);
          // The trainer's own clock over the whole epoch: the figure the headless CLI's epoch time gives too.
          state.epochRates.push(n / r.seconds);
          // With β ≠ 1 or a warm-up the objective optimized is not the loss: say both, labelled as the CLI labels them.
          const { beta = DEFAULT_OBJECTIVE.beta, klWarmup = DEFAULT_OBJECTIVE.klWarmup } = s.model.config;
          const objective =
            weightedKl(s.model.config) && r.trainObjective !== undefined
              ? ` (objective recon + β·KL, β = ${beta}${klWarmup ? `, warmed up over ${klWarmup} steps` : ''}: ` +
                `${r.trainObjective.toFixed(2)} and ${r.test!.objective!.toFixed(2)})`
              : '';
          say(
            `Epoch ${r.epoch}: training loss ${r.trainLoss.toFixed(2)}, test loss ${r.test!.loss.toFixed(2)} per image${objective}; ` +
              `${Math.round(n / r.seconds).toLocaleString('en')} images/s.`,
          );
        },
      },
    );
    const last = result.epochs.at(-1);
    if (failed(app)) return;
    if (last && !last.completed) {
      // Show what the partly trained weights do (a display only: noise of epoch 0); storage keeps the last completed epoch.
      await s.trainer.testPass();
      await showModel(app, s);
      say(`Stopped during epoch ${last.epoch}. Continue repeats it; browser storage holds epoch ${s.epochsDone}.`);
    } else if (!result.stopped) {
      progress.finish();
      say(
        `Done: ${s.epochsDone} epoch${s.epochsDone === 1 ? '' : 's'}. Raise Epochs and press Continue to train further.`,
      );
    }
  } finally {
    state.gate = null;
  }
}
