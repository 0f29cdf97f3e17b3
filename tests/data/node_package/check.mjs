// Imports the package npm ci installed beside this script: proves Node resolves it there.
import isNumber from "is-number";

console.log(JSON.stringify({ ok: isNumber(5) && !isNumber("x") }));
