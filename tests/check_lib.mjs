// The harness of the JavaScript end-to-end tests: named checks that report "ok" or "FAIL" one by
// one (a failed check does not stop the others), then a summary and the exit status.
let failures = 0;

export async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  }
}

// Prints how the checks went and exits: 1 when any failed.
export function finish() {
  console.log(failures ? `${failures} check(s) failed` : "all checks passed");
  process.exit(failures ? 1 : 0);
}
