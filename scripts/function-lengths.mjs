import { execSync } from 'node:child_process';
import fs from 'node:fs';
import ts from 'typescript';

const files = execSync("git ls-files 'gateway/src/**/*.ts' 'ui/src/**/*.ts' 'nodes/**/*.ts'")
  .toString()
  .trim()
  .split('\n');
const out = [];
for (const f of files) {
  const src = ts.createSourceFile(f, fs.readFileSync(f, 'utf8'), ts.ScriptTarget.Latest, true);
  const visit = (n) => {
    if (
      ts.isFunctionDeclaration(n) ||
      ts.isMethodDeclaration(n) ||
      ts.isArrowFunction(n) ||
      ts.isFunctionExpression(n) ||
      ts.isConstructorDeclaration(n)
    ) {
      const a = src.getLineAndCharacterOfPosition(n.getStart()).line,
        b = src.getLineAndCharacterOfPosition(n.getEnd()).line;
      const name =
        n.name?.getText?.() ??
        (ts.isVariableDeclaration(n.parent)
          ? n.parent.name.getText()
          : ts.isPropertyAssignment(n.parent)
            ? n.parent.name.getText()
            : '<anon>');
      if (b - a + 1 > 80) out.push([b - a + 1, f + ':' + (a + 1), name]);
    }
    ts.forEachChild(n, visit);
  };
  visit(src);
}
out.sort((x, y) => y[0] - x[0]);
for (const o of out) console.log(o.join('\t'));
