// A scripted server for tests that need no cluster: the test's handler
// answers each request on a loopback port.
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * serve runs handler on a loopback server for the length of f, which gets the
 * server's URL. The handler gets each request's body as text and as bytes
 * (for protobuf).
 */
export async function serve(handler: (req: IncomingMessage, body: string, res: ServerResponse, raw: Buffer) => void,
  f: (url: string) => Promise<void>): Promise<void> {
  const srv = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      handler(req, raw.toString(), res, raw);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    await f(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`);
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
}
