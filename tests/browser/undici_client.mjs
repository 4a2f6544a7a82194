// undici's EventSource (the WHATWG one Node ships from version 22 on),
// pinned in package.json: prints each event it dispatches as a JSON line
// {"event","data","id"} and exits after N of them.
//
// Usage: node undici_client.mjs URL N [NAME,NAME...]  (the named events to listen for)
import { EventSource } from "undici";

const [url, count, names = ""] = process.argv.slice(2);
let left = Number(count);
const source = new EventSource(url);
const timer = setTimeout(() => {
  console.error(`undici: timed out with ${left} events to go`);
  process.exit(1);
}, 15_000);
const print = (e) => {
  process.stdout.write(JSON.stringify({ event: e.type, data: e.data, id: e.lastEventId }) + "\n");
  if (--left === 0) {
    source.close();
    clearTimeout(timer);
  }
};
source.onmessage = print;
for (const name of names.split(",").filter(Boolean)) source.addEventListener(name, print);
source.onerror = () => {
  if (source.readyState === EventSource.CLOSED) {
    console.error("undici: the stream failed");
    process.exit(1);
  }
};
