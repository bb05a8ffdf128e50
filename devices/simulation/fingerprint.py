"""The simulated ten-print reader: synthetic prints of a simulated person (tests, demo)."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from biometrics import synthetic
from devices.fingerprint import POSITIONS, DeviceInfo, FingerprintReader, FingerprintReaderError


class SimulatedFingerprintReader(FingerprintReader):
    """Serves synthetic prints of one simulated person: each position is a different finger
    (a master fingerprint), and each capture a new impression of it.

    With ``prefetch`` the person's fingers are made in a background thread from the start (a
    second of CPU each), while the person is busy with the card and the camera, as a real
    person's fingers are there before the reader is."""

    def __init__(
        self,
        person: int,
        difficulty: float = 1.0,
        missing: set[int] | None = None,
        first_impression: int = 0,
        prefetch: bool = False,
    ):
        self.person, self.difficulty = person, difficulty
        self.missing = set(missing or ())  # amputated or bandaged fingers
        self.first_impression = first_impression  # another visit: impressions not seen before
        self._attempts: dict[int, int] = {}
        # by master-fingerprint seed: a capture asks for the finger its position's seed names
        self._masters: dict[int, Future[synthetic.MasterFingerprint]] = {}
        self._maker: threading.Thread | None = None
        if prefetch:
            positions = sorted(set(POSITIONS) - self.missing)
            self._masters = {self.finger_seed(p): Future() for p in positions}
            # not a daemon thread: one stopped inside OpenCV at exit aborts the process
            self._maker = threading.Thread(target=self._make_masters, name="finger-sim")
            self._maker.start()

    def _make_masters(self) -> None:
        for seed, made in self._masters.items():
            if not made.set_running_or_notify_cancel():  # closed: the person has gone
                continue
            try:
                made.set_result(synthetic.master_fingerprint(seed))
            except Exception as exc:  # handed to the capture that waits for this finger
                made.set_exception(exc)

    def info(self) -> DeviceInfo:
        """The simulated reader's identity (its firmware configuration's model)."""
        return DeviceInfo(
            "fingerprint", "simulated", "RNP", "simulated-fingerprint", "SIM-0001", "1.0"
        )

    def finger_seed(self, position: int) -> int:
        """The master-fingerprint seed of this person's finger."""
        return 1_000_003 * self.person + position

    def capture(self, position: int) -> np.ndarray:
        """A new 500-dpi impression of the finger at ``position``."""
        if position not in POSITIONS:
            raise ValueError(f"finger position must be 1-10, not {position}")
        if position in self.missing:
            raise FingerprintReaderError(f"no finger detected ({POSITIONS[position]})")
        attempt = self._attempts.get(position, self.first_impression)
        self._attempts[position] = attempt + 1
        seed = self.finger_seed(position)
        made = self._masters.get(seed)
        master = made.result() if made else synthetic.master_fingerprint(seed)
        return synthetic.fingerprint_impression(master, attempt, difficulty=self.difficulty)

    def close(self) -> None:
        """The person has gone: fingers not made yet are not made (waits for the one being
        made, a second at most)."""
        for made in self._masters.values():
            made.cancel()
        if self._maker is not None:
            self._maker.join()
