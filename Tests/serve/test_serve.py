"""`nerve serve` as a user meets it: a real server process on a free port, driven over HTTP and
from a real headless Chromium (selenium + chromedriver).

Run by scripts/test.sh:  NERVE=.build/release/nerve SERVE_OUTPUT=DIR python -m pytest Tests/serve
SERVE_OUTPUT receives the browser's screenshots.
"""

import base64
import concurrent.futures
import gzip
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
NERVE = os.environ.get("NERVE", str(ROOT / ".build/release/nerve"))
OUTPUT = Path(os.environ.get("SERVE_OUTPUT", "/tmp/nerve-serve-test"))
IDLE_TIMEOUT = 2


# ---------------------------------------------------------------- data and pictures

def mnist_test(count):
    with gzip.open(ROOT / "Data/mnist/t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:count]
    with gzip.open(ROOT / "Data/mnist/t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:count]
    return images, labels


def png_bytes(gray):
    """An 8-bit grayscale PNG of a 2-D uint8 array (filter 0 on every row)."""
    h, w = gray.shape
    raw = b"".join(b"\x00" + gray[y].tobytes() for y in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pgm_bytes(gray):
    h, w = gray.shape
    return b"P5\n%d %d\n255\n" % (w, h) + gray.tobytes()


def paper(digit_image, scale=4):
    """An MNIST digit as a photo-like picture: dark ink on light paper, larger, off-centre."""
    big = np.kron(255 - digit_image, np.ones((scale, scale), np.uint8))
    canvas = np.full((28 * scale + 40, 28 * scale + 20), 255, np.uint8)
    canvas[30:30 + big.shape[0], 5:5 + big.shape[1]] = big
    return canvas


# ---------------------------------------------------------------- the server

class Server:
    def __init__(self, model, *extra):
        self.process = subprocess.Popen(
            [NERVE, "serve", str(model), "--port", "0", "--idle-timeout", str(IDLE_TIMEOUT), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            found = re.search(r"listening on (http://\S+/)", line)
            if found:
                self.url = found.group(1)
                return
        self.process.kill()
        raise RuntimeError("nerve serve did not start:\n" + "".join(self.lines))

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        rest, _ = self.process.communicate(timeout=30)
        self.lines.append(rest)
        return self.process.returncode, "".join(self.lines)


def request(url, body=None, content_type=None, method=None):
    """(status, parsed JSON) of one request."""
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post_json(url, value):
    return request(url + "predict", json.dumps(value).encode(), "application/json")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "mlp.safetensors"
    subprocess.run([NERVE, "train", "--layers", "784,128,10", "--activation", "relu", "--loss", "cross_entropy",
                    "--lr", "0.1", "--batch-size", "32", "--epochs", "3", "--validation", "0", "--seed", "1",
                    "--quiet", "--save", str(path)], check=True, stdout=subprocess.DEVNULL)
    return path


@pytest.fixture(scope="module")
def server(model):
    s = Server(model)
    yield s
    code, log = s.stop()
    assert code == 0, log
    assert "stopped after" in log


# ---------------------------------------------------------------- the API

def test_health_and_model(server):
    assert request(server.url + "healthz") == (200, {"status": "ok"})
    status, description = request(server.url + "model")
    assert status == 200
    assert description["input_shape"] == [784] and description["classes"] == 10
    assert [layer["type"] for layer in description["layers"]] == ["dense", "dense"]
    assert "Total params: 101770" in description["summary"]


def test_pixels_match_nerve_predict(server, model):
    images, _ = mnist_test(20)
    cli = subprocess.run([NERVE, "predict", str(model), "--count", "20"], check=True,
                         capture_output=True, text=True).stdout
    expected = [int(c) for c in re.findall(r"^\d+: predicted (\d)", cli, re.M)]
    assert len(expected) == 20
    served = []
    for image in images:
        status, answer = post_json(server.url, {"pixels": image.reshape(-1).tolist()})
        assert status == 200, answer
        assert abs(sum(answer["probabilities"]) - 1) < 1e-4 and len(answer["probabilities"]) == 10
        assert "prepared" not in answer
        served.append(answer["class"])
    assert served == expected


def test_batch_equals_single_requests(server):
    images, labels = mnist_test(100)
    status, answer = post_json(server.url, {"batch": images.reshape(100, -1).tolist()})
    assert status == 200
    classes = [p["class"] for p in answer["predictions"]]
    assert np.mean(np.array(classes) == labels) > 0.9
    for i in (0, 17, 99):
        _, one = post_json(server.url, {"pixels": images[i].reshape(-1).tolist()})
        assert one["class"] == classes[i]
        assert np.allclose(one["probabilities"], answer["predictions"][i]["probabilities"], atol=1e-6)


def test_pictures_png_and_pgm(server):
    images, labels = mnist_test(40)
    right = 0
    for image, label in zip(images, labels):
        status, answer = request(server.url + "predict", png_bytes(paper(image)), "image/png")
        assert status == 200, answer
        right += answer["class"] == label
        prepared = answer["prepared"]
        assert prepared.startswith("data:image/png;base64,")
        seen = base64.b64decode(prepared.split(",", 1)[1])
        assert seen.startswith(b"\x89PNG") and struct.unpack(">II", seen[16:24]) == (28, 28)
    assert right >= 34, f"{right}/40 photo-like pictures read correctly"
    status, answer = request(server.url + "predict", pgm_bytes(paper(images[0])), "image/x-portable-graymap")
    assert status == 200 and answer["class"] == labels[0]


@pytest.mark.parametrize("body, content_type, status, words", [
    (b"hello", "text/plain", 415, "unsupported Content-Type"),
    (b"hello", None, 415, "Content-Type"),
    (b"hello", "image/png", 400, "not a PNG or PGM"),
    (b"\xff\xd8\xff\xe0 jpeg", "image/png", 400, "JPEG"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png", 400, "the picture"),
    (b"", "image/png", 400, "empty"),
    (png_bytes(np.full((30, 30), 255, np.uint8)), "image/png", 400, "found no digit"),
    (b"{not json", "application/json", 400, "not JSON"),
    (b'{"pixels": [1, 2, 3]}', "application/json", 400, "holds 3 numbers; the model takes 784"),
    (b'{"batch": [[1, 2]]}', "application/json", 400, '"batch"[0] holds 2 numbers'),
    (b'{"batch": []}', "application/json", 400, "empty"),
    (b'{"pixels": [1], "batch": [[1]]}', "application/json", 400, "not both"),
    (b'{"other": 1}', "application/json", 400, "neither"),
], ids=["text", "no-type", "not-image", "jpeg", "corrupt-png", "empty", "blank-picture", "bad-json",
        "pixel-count", "batch-row", "empty-batch", "both", "neither"])
def test_bad_requests_are_refused_and_serving_goes_on(server, body, content_type, status, words):
    got, answer = request(server.url + "predict", body, content_type)
    assert got == status, answer
    assert words.lower() in answer["error"].lower(), answer
    assert request(server.url + "healthz")[0] == 200


def raw_exchange(url, head, body_pieces=()):
    """Sends a request by hand (the server may answer and close before the body is all sent)
    and returns the status and the JSON answer."""
    host, port = re.match(r"http://([^/:]+):(\d+)/", url).groups()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        try:
            s.sendall(head)
            for piece in body_pieces:
                s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
            header, _, rest = answer.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", header, re.I)
            if length and len(rest) >= int(length.group(1)):
                break
    header, _, rest = answer.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(rest)


def test_bodies_over_the_limit_get_413(server):
    # Declared too large: refused before any of the body is read.
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000000\r\n\r\n"
    status, answer = raw_exchange(server.url, head)
    assert status == 413 and "limit is 4194304" in answer["error"]
    # Sent in chunks with no length given: refused once it passes the limit.
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"%x\r\n" % 65536 + b"\x00" * 65536 + b"\r\n"
    status, answer = raw_exchange(server.url, head, [piece] * 80 + [b"0\r\n\r\n"])
    assert status == 413 and "limit" in answer["error"]
    assert request(server.url + "healthz")[0] == 200


def test_unknown_paths_and_methods(server):
    status, answer = request(server.url + "nothing-here")
    assert status == 404 and "no such page" in answer["error"]
    status, answer = request(server.url + "predict", method="GET")
    assert status == 405 and "POST" in answer["error"]


def test_200_concurrent_requests_get_their_own_answers(server):
    images, _ = mnist_test(200)
    _, batch = post_json(server.url, {"batch": images.reshape(200, -1).tolist()})
    expected = [p["class"] for p in batch["predictions"]]

    def ask(i):
        return post_json(server.url, {"pixels": images[i].reshape(-1).tolist()})

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(ask, range(200)))
    assert all(status == 200 for status, _ in answers)
    assert [a["class"] for _, a in answers] == expected
    for i, (_, a) in enumerate(answers):
        assert np.allclose(a["probabilities"], batch["predictions"][i]["probabilities"], atol=1e-6)


def test_a_stalled_client_is_dropped_without_holding_the_server(server):
    host, port = re.match(r"http://([^/:]+):(\d+)/", server.url).groups()
    stalled = socket.create_connection((host, int(port)))
    stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n\x89PNG")
    start = time.time()
    assert request(server.url + "healthz")[0] == 200  # others are served meanwhile
    stalled.settimeout(IDLE_TIMEOUT + 10)
    data = stalled.recv(4096)  # the server closes it (possibly after a 408 or an error)
    assert time.time() - start < IDLE_TIMEOUT + 8
    assert not data or data.startswith(b"HTTP/1.1 4")
    stalled.close()


def test_sigint_stops_gracefully(model):
    s = Server(model)
    assert request(s.url + "healthz")[0] == 200
    code, log = s.stop(signal.SIGINT)
    assert code == 0, log


def test_sigterm_lets_requests_in_flight_finish(model):
    s = Server(model, "--max-body", "200000000")
    images, _ = mnist_test(1000)
    body = json.dumps({"batch": np.tile(images.reshape(1000, -1), (20, 1)).tolist()}).encode()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(request, s.url + "predict", body, "application/json")
        time.sleep(0.3)  # the 20,000-sample request is on its way or being answered
        assert not answer.done()
        s.process.send_signal(signal.SIGTERM)
        status, result = answer.result(timeout=60)
    assert status == 200 and len(result["predictions"]) == 20_000
    rest, _ = s.process.communicate(timeout=30)
    assert s.process.returncode == 0, rest


# ---------------------------------------------------------------- the page in a real browser

@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def stroke(driver, pad, points):
    """One pointer stroke through points given as fractions of the pad (0..1 from its top left)."""
    from selenium.webdriver.common.action_chains import ActionChains

    w, h = pad.size["width"], pad.size["height"]
    at = [(round((x - 0.5) * w), round((y - 0.5) * h)) for x, y in points]
    chain = ActionChains(driver, duration=10).move_to_element_with_offset(pad, *at[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(at, at[1:]):
        chain = chain.move_by_offset(x1 - x0, y1 - y0)
    chain.release().perform()


def wait_for_digit(driver, previous_status=None, timeout=10):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element("id", "digit").text.strip() != ""
        and "thinking" not in d.find_element("id", "status").text)
    time.sleep(0.4)  # a last debounced request may still be on its way
    WebDriverWait(driver, timeout).until(lambda d: "thinking" not in d.find_element("id", "status").text)
    return driver.find_element("id", "digit").text.strip()


def line(x0, y0, x1, y1, steps=12):
    return [(x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps) for t in range(steps + 1)]


def test_drawing_a_7_and_a_0_in_chromium(server, browser):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.get(server.url)
    pad = browser.find_element("id", "pad")
    assert browser.find_element("id", "digit").text == ""
    assert "Total params" in browser.find_element("id", "summary").text
    # A 7: the bar, then the stem.
    stroke(browser, pad, line(0.28, 0.22, 0.72, 0.22) + line(0.72, 0.22, 0.45, 0.8)[1:])
    seven = wait_for_digit(browser)
    browser.save_screenshot(str(OUTPUT / "serve-7.png"))
    assert seven == "7"
    bars = browser.find_elements("css selector", "#bars .row")
    assert len(bars) == 10 and "best" in bars[7].get_attribute("class")
    assert browser.find_element("id", "seen").get_attribute("src").startswith("data:image/png;base64,")
    # The clear button, from the keyboard.
    clear = browser.find_element("id", "clear")
    clear.send_keys("\n")
    assert browser.find_element("id", "digit").text == ""
    # A 0: an ellipse.
    import math
    ring = [(0.5 + 0.2 * math.sin(2 * math.pi * t / 36), 0.5 - 0.3 * math.cos(2 * math.pi * t / 36)) for t in range(38)]
    stroke(browser, pad, ring)
    zero = wait_for_digit(browser)
    browser.save_screenshot(str(OUTPUT / "serve-0.png"))
    assert zero == "0"


def test_the_page_fits_a_phone(server, browser):
    browser.set_window_size(390, 844)
    try:
        browser.get(server.url)
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        pad = browser.find_element("id", "pad")
        assert scroll <= width, "the page scrolls sideways on a phone"
        assert pad.size["width"] >= 0.8 * width and abs(pad.size["width"] - pad.size["height"]) <= 2
        browser.save_screenshot(str(OUTPUT / "serve-phone.png"))
    finally:
        browser.set_window_size(900, 900)


def test_uploading_a_photo_in_chromium(server, browser, tmp_path):
    images, labels = mnist_test(3)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(paper(images[1])))
    browser.get(server.url)
    browser.find_element("id", "upload").send_keys(str(photo))
    assert wait_for_digit(browser) == str(labels[1])
