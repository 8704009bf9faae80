/** Exit codes of the `portcullis` command; documented in `--help` and README. */
export const EXIT = {
  ok: 0,
  /** The operation ran and found a problem (e.g. a broken audit chain), or failed at run time. */
  failure: 1,
  /** Bad usage or bad configuration: nothing was changed. */
  usage: 2,
} as const;
