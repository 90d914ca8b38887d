"""The benchmark receiver (bench/receiver.py): behaviours per path, keep-alive and
pipelining, signature sampling, duplicates, and control traffic kept out of the
counts. No speed assertions: timings on a shared machine are noise."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from bench.receiver import Receiver
from webhooks.wire import ContentType, new_secret, request_headers

SECRET = new_secret()
PATHS = {
    "/ok": "ok",
    "/gone": "status:410",
    "/broken": "status:500",
    "/slow": "slow:400",
    "/hang": "hang",
    "/signed": "ok",
    "/trickle": "trickle",
}
BODY = b'{"type":"location","data":{"vehicle":{"id":1}}}'


def signed(message_id: str, body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return request_headers(ContentType.JSON, message_id, int(time.time()), body, [secret])


@pytest.fixture(scope="module")
def started() -> Iterator[Receiver]:
    with Receiver(PATHS, {"/signed": SECRET}, verify_every=1) as receiver:
        yield receiver


@pytest.fixture
def receiver(started: Receiver) -> Iterator[Receiver]:
    started.reset()
    yield started


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


def test_answers_per_path(receiver: Receiver, session: requests.Session) -> None:
    assert session.post(receiver.url + "/ok", data=BODY).status_code == 200
    assert session.post(receiver.url + "/gone", data=BODY).status_code == 410
    assert session.post(receiver.url + "/broken", data=BODY).status_code == 500
    assert session.post(receiver.url + "/elsewhere", data=BODY).status_code == 404
    began = time.perf_counter()
    assert session.post(receiver.url + "/slow", data=BODY).status_code == 200
    assert time.perf_counter() - began >= 0.35
    counts = receiver.counts()
    assert {path: counts[path] for path in ["/ok", "/gone", "/broken", "/slow", "/elsewhere"]} == {
        "/ok": 1,
        "/gone": 1,
        "/broken": 1,
        "/slow": 1,
        "/elsewhere": 1,
    }


def test_slow_answers_do_not_hold_up_other_connections(receiver: Receiver) -> None:
    finished: list[float] = []

    def slow() -> None:
        with requests.Session() as other:
            other.post(receiver.url + "/slow", data=BODY)
        finished.append(time.perf_counter())

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.05)
    with requests.Session() as session:
        assert session.post(receiver.url + "/ok", data=BODY).status_code == 200
    answered = time.perf_counter()
    thread.join()
    assert finished and answered < finished[0]


def test_hang_holds_the_connection_while_other_paths_answer(
    receiver: Receiver, session: requests.Session
) -> None:
    with socket.create_connection(("127.0.0.1", receiver.port)) as hung:
        hung.sendall(
            b"POST /hang HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_h\r\nContent-Length: 2\r\n\r\n{}"
        )
        with pytest.raises(requests.Timeout):
            session.post(receiver.url + "/hang", data=BODY, timeout=0.5)
        assert session.post(receiver.url + "/ok", data=BODY, timeout=2).status_code == 200
        hung.settimeout(0.2)
        with pytest.raises(TimeoutError):
            hung.recv(100)  # no answer, and not closed either (that would read b"")
    assert receiver.counts()["/hang"] == 2


def test_keep_alive_serves_many_posts_on_one_connection(
    receiver: Receiver, session: requests.Session
) -> None:
    for n in range(1000):
        response = session.post(receiver.url + "/ok", data=BODY, headers={"webhook-id": f"m{n}"})
        assert response.status_code == 200
    stats = receiver.stats()["/ok"]
    assert stats["received"] == stats["unique"] == 1000
    assert [webhook_id for webhook_id, _ in stats["arrivals"][:2]] == ["m0", "m1"]
    assert receiver.connections() == 1


def test_pipelined_and_partial_requests(receiver: Receiver) -> None:
    one = b"POST /ok HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_%d\r\nContent-Length: 7\r\n\r\nabcdefg"
    slow = b"POST /slow HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_s\r\nContent-Length: 0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.settimeout(2)
        # three requests in one write, the middle one slow: answers keep request order
        sock.sendall(one % 1 + slow + one % 2)
        # then one split across writes, in the head and in the body
        request = one % 3
        for piece in (request[:5], request[5:40], request[40:-3], request[-3:]):
            sock.sendall(piece)
            time.sleep(0.01)
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 4:
            data = sock.recv(4096)
            assert data, "the receiver closed the connection"
            answers += data
    assert answers.count(b"HTTP/1.1 ") == 4
    arrivals = receiver.stats()
    assert [webhook_id for webhook_id, _ in arrivals["/ok"]["arrivals"]] == [
        "msg_1",
        "msg_2",
        "msg_3",
    ]
    assert arrivals["/slow"]["received"] == 1


@pytest.mark.parametrize("length", [b"-5", b"x"])
def test_a_bad_content_length_is_refused(receiver: Receiver, length: bytes) -> None:
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.settimeout(2)
        sock.sendall(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
    assert receiver.counts()["/ok"] == 0


def test_signatures_are_verified_and_tampering_counted(
    receiver: Receiver, session: requests.Session
) -> None:
    session.post(receiver.url + "/signed", data=BODY, headers=signed("msg_good"))
    stats = receiver.stats()["/signed"]
    assert (stats["verified"], stats["signature_failures"]) == (1, 0)

    session.post(receiver.url + "/signed", data=BODY + b" ", headers=signed("msg_bad"))
    session.post(
        receiver.url + "/signed", data=BODY, headers=signed("msg_other", secret=new_secret())
    )
    stats = receiver.stats()["/signed"]
    assert (stats["verified"], stats["signature_failures"]) == (3, 2)
    assert stats["failures"][0].startswith("msg_bad: WebhookVerificationError")
    # paths without a secret are not verified
    session.post(receiver.url + "/ok", data=BODY, headers=signed("msg_x", secret=new_secret()))
    assert receiver.stats()["/ok"]["verified"] == 0


def test_every_nth_request_is_verified() -> None:
    with (
        Receiver({"/s": "ok"}, {"/s": SECRET}, verify_every=10) as receiver,
        requests.Session() as session,
    ):
        for n in range(25):
            session.post(receiver.url + "/s", data=BODY, headers={"webhook-id": f"u{n}"})
        stats = receiver.stats()["/s"]
    # the 1st, 11th and 21st were checked; they carry no signature, so they fail
    assert (stats["received"], stats["verified"], stats["signature_failures"]) == (25, 3, 3)


def test_a_repeat_with_another_body_is_counted(
    receiver: Receiver, session: requests.Session
) -> None:
    for message_id, body in [("msg_a", BODY), ("msg_a", BODY), ("msg_a", BODY + b" ")]:
        session.post(receiver.url + "/ok", data=body, headers={"webhook-id": message_id})
    stats = receiver.stats(arrivals=False)["/ok"]
    assert (stats["duplicates"], stats["body_mismatches"]) == (2, 1)


def test_a_behaviour_changes_while_it_runs(session: requests.Session) -> None:
    with Receiver({"/x": "ok"}) as receiver:
        assert session.post(receiver.url + "/x", data=BODY).status_code == 200
        receiver.behave("/x", "status:503")
        assert session.post(receiver.url + "/x", data=BODY).status_code == 503
        receiver.behave("/x", "slow:150-250")
        started = time.monotonic()
        assert session.post(receiver.url + "/x", data=BODY).status_code == 200
        assert 0.15 <= time.monotonic() - started < 1.0
        assert receiver.stats(arrivals=False)["/x"]["received"] == 3
        with pytest.raises(ValueError):
            receiver.behave("/x", "slow:300-100")


def lane(message_id: str, key: str, sequence: int) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "fleethook-ordering-key": key,
        "fleethook-sequence": str(sequence),
    }


def test_each_lane_must_arrive_in_sequence(receiver: Receiver, session: requests.Session) -> None:
    # two lanes interleaved, each in order, and a redelivery (not checked again)
    for message_id, key, sequence in [
        ("a1", "vehicle:1", 1),
        ("b1", "vehicle:2", 1),
        ("a2", "vehicle:1", 2),
        ("a1", "vehicle:1", 1),
        ("b2", "vehicle:2", 2),
        ("a3", "vehicle:1", 3),
    ]:
        session.post(receiver.url + "/ok", data=BODY, headers=lane(message_id, key, sequence))
    stats = receiver.stats(arrivals=False)["/ok"]
    assert (stats["lanes"], stats["in_sequence"], stats["out_of_sequence"]) == (2, 5, 0)
    # a gap, then the late one: both counted, each named
    for message_id, sequence in [("a5", 5), ("a4", 4)]:
        headers = lane(message_id, "vehicle:1", sequence)
        session.post(receiver.url + "/ok", data=BODY, headers=headers)
    stats = receiver.stats(arrivals=False)["/ok"]
    assert (stats["in_sequence"], stats["out_of_sequence"]) == (5, 2)
    assert stats["order_failures"][0] == (
        "a5: lane vehicle:1 got fleethook-sequence '5' where 4 was next"
    )
    # the same key at another path is another lane
    session.post(receiver.url + "/signed", data=BODY, headers=lane("c1", "vehicle:1", 1))
    assert receiver.stats(arrivals=False)["/signed"]["out_of_sequence"] == 0


def test_lanes_are_not_checked_across_processes() -> None:
    with Receiver({"/ok": "ok"}, processes=2) as receiver, requests.Session() as session:
        session.post(receiver.url + "/ok", data=BODY, headers=lane("a2", "vehicle:1", 2))
        stats = receiver.stats(arrivals=False)["/ok"]
    assert (stats["received"], stats["lanes"], stats["out_of_sequence"]) == (1, 0, 0)


def test_a_trickle_sends_headers_then_a_byte_at_a_time(receiver: Receiver) -> None:
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.sendall(
            b"POST /trickle HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_t\r\nContent-Length: 2\r\n\r\n{}"
        )
        sock.settimeout(2)
        got = b""
        ends = time.monotonic() + 0.55
        while time.monotonic() < ends:
            got += sock.recv(4096)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 1000000" in head
    assert 3 <= len(body) <= 6 and set(body) == {ord(".")}  # one byte every 100 ms
    assert receiver.stats(arrivals=False)["/trickle"]["received"] == 1


def test_a_trickle_never_completes_within_a_deadline(receiver: Receiver) -> None:
    import asyncio

    import aiohttp

    async def fetch() -> float:
        began = time.monotonic()
        async with aiohttp.ClientSession() as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    async with client.post(receiver.url + "/trickle", data=BODY) as response:
                        assert response.status == 200  # the head comes at once
                        await response.read()
        return time.monotonic() - began

    assert 0.5 <= asyncio.run(fetch()) < 1.5
    assert receiver.stats(arrivals=False)["/trickle"]["received"] == 1


def test_duplicates_are_counted(receiver: Receiver, session: requests.Session) -> None:
    for message_id in ["msg_a", "msg_b", "msg_a", "msg_a"]:
        session.post(receiver.url + "/signed", data=BODY, headers=signed(message_id))
    stats = receiver.stats()["/signed"]
    assert (stats["received"], stats["unique"], stats["duplicates"]) == (4, 2, 2)
    light = receiver.stats(arrivals=False)["/signed"]
    assert (light["received"], light["unique"], light["duplicates"], light["arrivals"]) == (
        4,
        2,
        2,
        [],
    )
    assert stats["signature_failures"] == 0
    times = [t for _, t in stats["arrivals"]]
    assert times == sorted(times) and abs(times[0] - time.time()) < 60


def test_control_traffic_is_not_counted(receiver: Receiver, session: requests.Session) -> None:
    session.post(receiver.url + "/ok", data=BODY)
    for _ in range(3):
        receiver.stats()
        receiver.counts()
        receiver.connections()
    stats = receiver.stats()
    assert stats["/ok"]["received"] == 1
    assert {path: record["received"] for path, record in stats.items() if record["received"]} == {
        "/ok": 1
    }
    receiver.reset()
    assert receiver.stats()["/ok"] == {
        "received": 0,
        "unique": 0,
        "duplicates": 0,
        "verified": 0,
        "signature_failures": 0,
        "body_mismatches": 0,
        "failures": [],
        "arrivals": [],
        "lanes": 0,
        "in_sequence": 0,
        "out_of_sequence": 0,
        "order_failures": [],
    }


def test_several_processes_share_the_port_and_merge_counts() -> None:
    with Receiver({"/ok": "ok"}, processes=2) as receiver:
        sessions = [requests.Session() for _ in range(8)]
        for session in sessions:
            for k in range(5):
                session.post(receiver.url + "/ok", data=BODY, headers={"webhook-id": f"{k}"})
            session.close()
        stats = receiver.stats()["/ok"]
        assert receiver.connections() == 8
    assert (stats["received"], stats["unique"], stats["duplicates"]) == (40, 5, 35)


def test_bad_behaviours_are_refused_before_starting() -> None:
    with pytest.raises(ValueError):
        Receiver({"/x": "sometimes"})
    with pytest.raises(ValueError):
        Receiver({"/x": "ok"}, {"/y": SECRET})
    with pytest.raises(ValueError):
        Receiver({"/x": "trickle:0"})


def test_ceiling_runs_and_checks_what_the_receiver_got() -> None:
    from bench.ceiling import measure_ceiling, measure_receiver_ceiling

    assert measure_ceiling(1, 0.2) > 0
    assert measure_receiver_ceiling(0.2, connections=2, depth=4) > 0
