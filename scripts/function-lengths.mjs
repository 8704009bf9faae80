/**
 * Lists the functions longer than 80 lines in gateway/, ui/ and nodes/ sources (measured with the TypeScript
 * parser), longest first. With --check, exits 1 when one is over the budget (90 lines: "under ~80" with room
 * for a comment) — except declarative code, whose length is its content: the tables named in DECLARATIVE and
 * the UI's page components (ui/src/pages/*.tsx, JSX markup) — and the known debt in DEBT, which may not grow.
 *   node scripts/function-lengths.mjs [--check]
 */
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import ts from 'typescript';

const REPORT = 80;
const BUDGET = 90;
/** Tables written as one expression (the configuration's zod schema): long by content, not by logic. */
const DECLARATIVE = new Set(['gateway/src/config/schema.ts:configSchema']);
const isPageComponent = (file, name) => file.startsWith('ui/src/pages/') && /^[A-Z]/.test(name);
/** Over the budget today, to be split; the figure is a ceiling. */
const DEBT = new Map(); // e.g. ['ui/src/routes/pages.tsx:loginPages', 206]: none today

const files = execSync(
  "git ls-files 'gateway/src/**/*.ts' 'ui/src/**/*.ts' 'ui/src/**/*.tsx' 'nodes/**/*.ts'",
  {
    cwd: new URL('..', import.meta.url),
  },
)
  .toString()
  .trim()
  .split('\n')
  .filter(Boolean);
const root = new URL('..', import.meta.url);
const out = [];
for (const f of files) {
  const src = ts.createSourceFile(f, fs.readFileSync(new URL(f, root), 'utf8'), ts.ScriptTarget.Latest, true);
  const visit = (n) => {
    if (
      ts.isFunctionDeclaration(n) ||
      ts.isMethodDeclaration(n) ||
      ts.isArrowFunction(n) ||
      ts.isFunctionExpression(n) ||
      ts.isConstructorDeclaration(n)
    ) {
      const a = src.getLineAndCharacterOfPosition(n.getStart()).line;
      const b = src.getLineAndCharacterOfPosition(n.getEnd()).line;
      const name =
        n.name?.getText?.() ??
        (ts.isVariableDeclaration(n.parent) || ts.isPropertyAssignment(n.parent)
          ? n.parent.name.getText()
          : '<anon>');
      if (b - a + 1 > REPORT) out.push({ lines: b - a + 1, at: `${f}:${a + 1}`, name, file: f });
    }
    ts.forEachChild(n, visit);
  };
  visit(src);
}
out.sort((x, y) => y.lines - x.lines);
for (const o of out) console.log(`${o.lines}\t${o.at}\t${o.name}`);
if (process.argv.includes('--check')) {
  const over = out.filter((o) => {
    const key = `${o.file}:${o.name}`;
    if (DECLARATIVE.has(key) || isPageComponent(o.file, o.name)) return false;
    return o.lines > (DEBT.get(key) ?? BUDGET);
  });
  for (const o of over) console.error(`over ${BUDGET} lines: ${o.at} ${o.name} (${o.lines})`);
  process.exit(over.length > 0 ? 1 : 0);
}
