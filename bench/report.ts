/**
 * What every bench script shares so that `npm run bench` (bench/run.ts) can stitch their
 * sections together: the quick switch, the median, and the target line.
 */

/** Set by `npm run bench -- --quick`: each script shortens its own settings, for a smoke run. */
export const quick = process.env["BENCH_QUICK"] === "1";

/** The middle sample; rounds are odd, so no averaging of two middles is needed. */
export const median = (samples: number[]): number => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;

/**
 * The line each section ends with, e.g. `Target: relay ≥ 0.70 × raw — met (0.83)`, so a
 * reader of RESULTS.md sees at once which goal a run reached without redoing the arithmetic.
 */
export function targetLine(goal: string, ratio: number, atLeast: number): string {
  return `Target: ${goal} — ${ratio >= atLeast ? "met" : "missed"} (${ratio.toFixed(2)})`;
}

/** How to rerun exactly this measurement, for the section's first line. */
export function commandLine(script: string, args: (string | number)[]): string {
  return `${quick ? "BENCH_QUICK=1 " : ""}npx tsx ${script} ${args.join(" ")}`.trimEnd();
}

/** Progress goes to stderr, so stdout holds only the markdown section the runner collects. */
export const progress = (line: string): void => void process.stderr.write(`${line}\n`);
