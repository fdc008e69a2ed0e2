#!/usr/bin/python3
"""Upload a file with slixmpp's XEP-0363 plugin and download it again.

Usage (Debian's python, which has python3-slixmpp and python3-aiohttp):
  /usr/bin/python3 scripts/interop/upload.py --host 127.0.0.1 --port 5222 \\
      --jid alice@localhost --password PW --ca DATA/tls/cert.pem --max-file-size N

Discovers the upload service through the server's disco#items (XEP-0030),
checks its XEP-0128 form, uploads random bytes with xep_0363's upload_file
(slot request, then an HTTPS PUT by aiohttp), GETs the URL and compares,
and checks that a slot over max-file-size is refused with not-acceptable and
<file-too-large/> (XEP-0363 5).

aiohttp verifies the upload URL's certificate with the default trust store,
which xep_0363 gives no way to change; SSL_CERT_FILE=--ca makes it trust the
server's self-signed certificate, so --ca is required here.

Prints "ok: ..." per step and PASS; exits 1 with "FAIL: ..." otherwise.
"""

import io
import os
import secrets
import ssl
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from xmpptest import Client, Failure, Steps, parser, run  # noqa: E402

UPLOAD_NS = "urn:xmpp:http:upload:0"
DATA_NS = "jabber:x:data"


def form_value(info_iq, var):
    """The value of field var in the upload form of a disco#info result (raw XML)."""
    for x in info_iq.xml.iter("{%s}x" % DATA_NS):
        fields = {f.get("var"): f.findtext("{%s}value" % DATA_NS) for f in x.iter("{%s}field" % DATA_NS)}
        if fields.get("FORM_TYPE") == UPLOAD_NS:
            return fields.get(var)
    return None


async def main(args):
    if not args.ca:
        raise Failure("--ca is required: aiohttp must trust the server's certificate for the PUT")
    # aiohttp builds its default SSL context on first use, from the default
    # verify paths, which honour SSL_CERT_FILE.
    os.environ["SSL_CERT_FILE"] = args.ca
    import aiohttp  # pylint: disable=import-outside-toplevel
    from slixmpp.exceptions import IqError  # pylint: disable=import-outside-toplevel

    c = Client("user", args.jid, args.password, args)
    c.x.register_plugin("xep_0363")
    await c.login()
    up = c.x["xep_0363"]

    Steps.start("discover the upload service")
    # xep_0363's find_upload_service (through xep_0030 get_info_from_domain)
    # hands coroutines to asyncio.wait, which Python 3.11 refuses: discover
    # the way it does, step by step, and tell the plugin the result.
    disco = c.x["xep_0030"]
    items = await disco.get_items(jid=c.jid.domain, timeout=args.step_timeout)
    info = None
    for item in items["disco_items"]["items"]:
        res = await disco.get_info(jid=item[0], timeout=args.step_timeout)
        ids = res["disco_info"]["identities"]
        if any(i[0] == "store" and i[1] == "file" for i in ids) and UPLOAD_NS in res["disco_info"]["features"]:
            info = res
            break
    if info is None:
        raise Failure("no service with identity store/file and %s in disco#items" % UPLOAD_NS)
    service = info["from"]
    max_size = form_value(info, "max-file-size")
    if max_size != str(args.max_file_size):
        raise Failure("max-file-size in the disco#info form is %r, want %d" % (max_size, args.max_file_size))
    up.upload_service = service
    up.max_file_size = int(max_size)
    Steps.ok("found %s, max-file-size %s" % (service, max_size))

    data = secrets.token_bytes(min(args.max_file_size, 300_000))
    Steps.start("upload %d bytes with xep_0363" % len(data))
    url = await up.upload_file("hearth test ä.bin", size=len(data), content_type="application/octet-stream",
                               input_file=io.BytesIO(data), timeout=args.step_timeout)
    if not url.startswith("https://"):
        raise Failure("GET URL is not HTTPS: %s" % url)
    Steps.ok("uploaded: %s" % url)

    Steps.start("download %s" % url)
    ctx = ssl.create_default_context(cafile=args.ca)
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=ctx, timeout=aiohttp.ClientTimeout(total=args.step_timeout)) as r:
            body = await r.read()
            if r.status != 200:
                raise Failure("GET %s: HTTP %d" % (url, r.status))
            if body != data:
                raise Failure("GET returned %d bytes that differ from the %d uploaded" % (len(body), len(data)))
            if r.headers.get("Content-Type") != "application/octet-stream":
                raise Failure("GET Content-Type %r" % r.headers.get("Content-Type"))
        Steps.ok("downloaded the same %d bytes" % len(body))

        Steps.start("PUT to the used slot again")
        async with session.put(url, data=b"x", ssl=ctx, timeout=aiohttp.ClientTimeout(total=args.step_timeout)) as r:
            if r.status != 409:
                raise Failure("second PUT: HTTP %d, want 409" % r.status)
        Steps.ok("second PUT refused with 409")

    Steps.start("request a slot over max-file-size")
    try:
        await up.request_slot(service, "big.bin", args.max_file_size + 1, "application/octet-stream",
                              timeout=args.step_timeout)
    except IqError as e:
        cond = e.iq["error"]["condition"]
        el = e.iq.xml.find(".//{%s}file-too-large" % UPLOAD_NS)
        limit = el.findtext("{%s}max-file-size" % UPLOAD_NS) if el is not None else None
        if cond != "not-acceptable" or limit != str(args.max_file_size):
            raise Failure("oversized slot refused with %s, file-too-large max %r" % (cond, limit)) from None
        Steps.ok("oversized slot refused: %s, max-file-size %s" % (cond, limit))
    else:
        raise Failure("a slot over max-file-size was granted")
    await c.close()


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jid", required=True, help="bare JID")
    p.add_argument("--password", required=True)
    p.add_argument("--max-file-size", type=int, required=True,
                   help="the server's --upload-max-file-size in bytes")
    run(main, p.parse_args())
