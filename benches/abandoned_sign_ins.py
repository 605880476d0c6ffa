"""Posts correct sign-ins and hangs up DELAY ms after sending each, from THREADS browsers
(benches/abandoned-sign-ins.sh). Browser i signs in user `u<i>` with the password in
$BENCH_PASSWORD. Usage: abandoned_sign_ins.py PORT SECONDS THREADS DELAY_MS.
Prints how many sign-ins were abandoned."""
import http.client, os, re, socket, sys, threading, time

host, port = "127.0.0.1", int(sys.argv[1])
duration, threads, delay = float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000
password = os.environ["BENCH_PASSWORD"]
sent = [0] * threads  # one slot per browser: no shared counter between threads


def browser(i):
    c = http.client.HTTPConnection(host, port)
    c.request("GET", "/login")
    r = c.getresponse()
    page = r.read().decode()
    cookie = r.getheader("set-cookie").split(";")[0]
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page).group(1)
    body = f"username=u{i}&password={password}&_csrf={csrf}".encode()
    req = (f"POST /login HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
           f"Content-Type: application/x-www-form-urlencoded\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    end = time.time() + duration
    while time.time() < end:
        s = socket.create_connection((host, port))
        s.sendall(req)
        time.sleep(delay)
        s.close()
        sent[i] += 1


ts = [threading.Thread(target=browser, args=(i,)) for i in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(sum(sent))
