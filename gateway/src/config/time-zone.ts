/** Whether this Node's ICU knows the IANA time zone (Europe/Berlin); the one check the config and the clock page share. */
export function isKnownTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
