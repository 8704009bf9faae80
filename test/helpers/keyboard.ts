/** The browser tests' keyboard walk (test/ui-console*.test.ts). */
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';

/**
 * Every visible control is reached by the Tab key, in a page whose first stop is the skip link. Controls are
 * named by what they are (tag, id, name, target, text), not marked: a live region may swap its nodes while
 * the keys are pressed. A radio group is one stop (Tab reaches it, the arrow keys move within it, as every
 * browser does), so its radios are named by the group.
 */
export async function tabReachesEveryControl(p: Page, where: string): Promise<void> {
  const KEY = `(el) => el.type === 'radio' ? ['RADIO', el.form ? el.form.id || el.form.action : '', el.name].join('|') : [el.tagName, el.id, el.getAttribute('name'), el.getAttribute('href'), el.getAttribute('value'), (el.textContent || '').trim().slice(0, 40)].join('|')`;
  const all = (await p.evaluate(`(() => {
    const key = ${KEY};
    const out = new Set();
    for (const el of document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex="0"]')) {
      // checkVisibility: also false inside a closed <details> (content-visibility), unlike client rects.
      if (!el.checkVisibility() || el.disabled) continue;
      out.add(key(el));
    }
    return [...out];
  })()`)) as string[];
  const seen = new Set<string>();
  for (let i = 0; i < all.length + 8; i++) {
    await p.keyboard.press('Tab');
    const k = (await p.evaluate(
      `(() => { const el = document.activeElement; return el && el !== document.body ? (${KEY})(el) : ''; })()`,
    )) as string;
    if (i === 0) assert.match(k, /Skip to content/, `${where}: the skip link is first`);
    if (k) seen.add(k);
  }
  const missed = all.filter((k) => !seen.has(k));
  assert.deepEqual(missed, [], `${where}: not reached by Tab`);
}
