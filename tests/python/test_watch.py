"""Client.watch against a real daemon: the changes in order with their
revisions, List + Watch without a gap, cancel, timeouts and bad input."""

import unittest

import shmbroker
from harness import DaemonTest, wait_for

DEADLINE = 20.0  # seconds; a state to wait for, never a sleep


class WatchTest(DaemonTest):
    def next_event(self, watcher):
        event = watcher.next(timeout=DEADLINE)
        self.assertIsNotNone(event, "no event within the deadline")
        return event

    def test_every_change_in_order_with_increasing_revisions(self):
        with self.client.watch("cam.") as watcher:
            buf = self.client.allocate(4096, name="cam.0")
            self.client.allocate(4096, name="other").release()  # not watched
            buf.seal()
            buf.release()
            created = self.next_event(watcher)
            sealed = self.next_event(watcher)
            released = self.next_event(watcher)
        self.assertEqual([e.type for e in (created, sealed, released)],
                         ["created", "sealed", "released"])
        self.assertEqual([e.buffer.name for e in (created, sealed, released)],
                         ["cam.0"] * 3)
        # Daemon-wide revisions: "other"'s two changes come in between.
        self.assertEqual(sealed.revision, created.revision + 3)
        self.assertEqual(released.revision, sealed.revision + 1)
        self.assertTrue(sealed.buffer.sealed)
        self.assertIsNone(created.reason)
        self.assertEqual(released.reason, "released")

    def test_list_then_watch_from_its_revision_misses_nothing(self):
        buffers, revision = self.client.list_with_revision()
        self.assertEqual(buffers, [])
        made = self.client.allocate(4096, name="cam.late")
        with self.client.watch("cam.", after_revision=revision) as watcher:
            event = self.next_event(watcher)
        self.assertEqual((event.type, event.buffer.name), ("created", "cam.late"))
        self.assertEqual(event.revision, revision + 1)
        made.release()

    def test_cancel_ends_the_iteration_and_a_timeout_returns_none(self):
        watcher = self.client.watch()
        self.assertIsNone(watcher.next(timeout=0.05))
        watcher.cancel()
        self.assertEqual(list(watcher), [])
        # The daemon forgets the watcher once it sees the stream cancelled,
        # which may come after the client's side has ended.
        wait_for(lambda: self.client.status().watchers == 0,
                 what="the daemon to forget the watcher")

    def test_bad_input(self):
        with self.assertRaisesRegex(shmbroker.InvalidArgument, "prefix"):
            self.client.watch("no spaces")
        with self.assertRaises(shmbroker.InvalidArgument):
            self.client.watch("", after_revision=10**12)
        with self.assertRaises(ValueError):
            self.client.watch("", after_revision=-1)
        with self.client.watch() as watcher:
            with self.assertRaises(ValueError):
                watcher.next(timeout=-1)


if __name__ == "__main__":
    unittest.main()
