"""Board games for AlphaZero: one small interface, tic-tac-toe, Connect Four (6×7) and Gomoku.

All three are "k in a row" games on a rectangular board, so one class does the work; Connect Four
adds gravity (a move names a column and the stone drops to the lowest empty cell).

Boards are NumPy int8 arrays in **canonical form**: +1 = stones of the player to move, -1 = the
opponent's, 0 = empty. `step` places a stone for the player to move and returns the board seen by the
next player (the array negated), so a search never needs to know whose colour is whose. The absolute
colour is recoverable from the stone count (the first player moves when it is even), which is the
network's "side to move" input plane.

    board'                       = -(board with +1 at the move)
    step(board, a) -> (board', done, reward)   reward for the player who just moved: +1 win, 0 otherwise

The batched tree search (`mcts.py`) needs the same rules for many boards at once: `legal_masks` and
`step_batch` take a stack of boards [N, rows, cols] and do one NumPy operation per rule for all of them
(no Python loop over boards); they agree with `legal_mask` / `step` board by board (tested).
"""

from __future__ import annotations

import abc
import random

import numpy as np


class Game(abc.ABC):
    """A two-player, zero-sum, perfect-information game with a fixed set of `action_size` moves.
    The abstract methods are the rules a concrete game supplies (`LineGame` does, for all three games)."""

    name: str
    rows: int
    cols: int
    action_size: int

    @abc.abstractmethod
    def initial(self) -> np.ndarray:
        """The empty board (first player to move)."""

    @abc.abstractmethod
    def legal_mask(self, board: np.ndarray) -> np.ndarray:
        """Boolean [action_size]: which moves are legal for the player to move."""

    @abc.abstractmethod
    def step(self, board: np.ndarray, action: int) -> tuple[np.ndarray, bool, float]:
        """Play `action`; returns (next board in the next player's canonical form, done, reward for the mover)."""

    def encode(self, boards: np.ndarray) -> np.ndarray:
        """Network input planes [B, 3, rows, cols]: own stones, opponent stones, side to move."""
        boards = np.asarray(boards).reshape(-1, self.rows, self.cols)
        first_to_move = (np.count_nonzero(boards, axis=(1, 2)) % 2 == 0).astype(np.float32)
        planes = np.empty((len(boards), 3, self.rows, self.cols), dtype=np.float32)
        planes[:, 0] = boards == 1
        planes[:, 1] = boards == -1
        planes[:, 2] = first_to_move[:, None, None]
        return planes

    @abc.abstractmethod
    def legal_masks(self, boards: np.ndarray) -> np.ndarray:
        """Vectorised `legal_mask`: boards [N, rows, cols] -> bool [N, action_size]."""

    @abc.abstractmethod
    def step_batch(self, boards: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised `step`: boards [N, rows, cols], actions [N] -> (boards', done [N], reward [N])."""

    @abc.abstractmethod
    def symmetries(self, board: np.ndarray, pi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(board, policy) pairs equivalent under the board's symmetries, for data augmentation."""

    @abc.abstractmethod
    def rollout(self, board: np.ndarray, rng: random.Random) -> float:
        """Play uniformly random moves to the end; the result for the player to move at `board` (+1/0/-1)."""

    def first_to_move(self, board: np.ndarray) -> bool:
        """True when the player to move is the first player (X / red)."""
        return np.count_nonzero(board) % 2 == 0

    @abc.abstractmethod
    def render(self, board: np.ndarray) -> str:
        """The board as text with absolute colours (X moves first, O second)."""

    @abc.abstractmethod
    def parse_move(self, text: str) -> int | None:
        """A human's move (1-based cell or column) -> action index, or None if it is not a move name."""

    def move_name(self, action: int) -> str:
        """The 1-based name a human types for `action`."""
        return str(action + 1)


class LineGame(Game):
    """k-in-a-row on a rows×cols board; with `gravity` a move is a column (Connect Four)."""

    def __init__(self, name: str, rows: int, cols: int, k: int, gravity: bool = False):
        self.name, self.rows, self.cols, self.k, self.gravity = name, rows, cols, k, gravity
        self.action_size = cols if gravity else rows * cols
        # For each cell, the index arrays of every k-window through it: a win check after a move looks
        # only at the windows through the new stone (one fancy-index operation).
        windows: list[list[int]] = []
        for r in range(rows):
            for c in range(cols):
                for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                    cells = [(r + i * dr, c + i * dc) for i in range(k)]
                    if all(0 <= rr < rows and 0 <= cc < cols for rr, cc in cells):
                        windows.append([rr * cols + cc for rr, cc in cells])
        self.windows = np.array(windows, dtype=np.int64)
        self.windows_through = [self.windows[(self.windows == cell).any(axis=1)] for cell in range(rows * cols)]
        self._window_lists = [[tuple(w) for w in ws.tolist()] for ws in self.windows_through]
        # The same as one array [cells, most windows through a cell, k] for `step_batch`; missing windows
        # point at a sentinel cell (index rows*cols, always empty) so they never count as a line.
        most = max(len(ws) for ws in self.windows_through)
        self.windows_padded = np.full((rows * cols, most, k), rows * cols, dtype=np.int64)
        for cell, ws in enumerate(self.windows_through):
            self.windows_padded[cell, :len(ws)] = ws

    def initial(self) -> np.ndarray:
        return np.zeros((self.rows, self.cols), dtype=np.int8)

    def legal_mask(self, board: np.ndarray) -> np.ndarray:
        if self.gravity:
            return board[0] == 0  # a column is open while its top cell is empty
        return board.reshape(-1) == 0

    def legal_masks(self, boards: np.ndarray) -> np.ndarray:
        if self.gravity:
            return boards[:, 0, :] == 0
        return boards.reshape(len(boards), -1) == 0

    def step_batch(self, boards: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(boards)
        rows = np.arange(n)
        flat = np.zeros((n, self.rows * self.cols + 1), dtype=np.int8)  # + the sentinel cell
        flat[:, :-1] = boards.reshape(n, -1)
        if self.gravity:  # the lowest empty row of the column: (number of empty cells in it) - 1
            empty = np.count_nonzero(boards[rows, :, actions] == 0, axis=1)
            cells = (empty - 1) * self.cols + actions
        else:
            cells = np.asarray(actions)
        if np.any(flat[rows, cells] != 0) or (self.gravity and np.any(empty == 0)):
            raise ValueError(f"illegal move in {self.name}")
        flat[rows, cells] = 1
        won = (flat[rows[:, None, None], self.windows_padded[cells]] == 1).all(axis=2).any(axis=1)
        done = won | ~(flat[:, :-1] == 0).any(axis=1)
        return (-flat[:, :-1]).reshape(n, self.rows, self.cols), done, won.astype(np.float64)

    def cell_of(self, board: np.ndarray, action: int) -> int:
        """The flat cell index a move fills."""
        if not self.gravity:
            return action
        empty_rows = np.flatnonzero(board[:, action] == 0)
        return int(empty_rows[-1]) * self.cols + action  # lowest empty row (row 0 is the top)

    def step(self, board: np.ndarray, action: int) -> tuple[np.ndarray, bool, float]:
        flat = board.reshape(-1).copy()
        cell = self.cell_of(board, action)
        if flat[cell] != 0:
            raise ValueError(f"illegal move {action} in {self.name}")
        flat[cell] = 1
        won = bool((flat[self.windows_through[cell]] == 1).all(axis=1).any())
        done = won or not (flat == 0).any()
        return (-flat).reshape(self.rows, self.cols), done, 1.0 if won else 0.0

    def is_win_for_mover(self, flat: list[int], cell: int) -> bool:
        """Pure-Python win check used by rollouts: did the stone of value flat[cell] complete a window?"""
        v = flat[cell]
        return any(all(flat[i] == v for i in w) for w in self._window_lists[cell])

    def rollout(self, board: np.ndarray, rng: random.Random) -> float:
        flat = board.reshape(-1).tolist()
        player = 1  # +1 = the player to move at `board`
        empty = [i for i, v in enumerate(flat) if v == 0]
        while empty:
            if self.gravity:
                moves = [i for i in empty if i + self.cols >= len(flat) or flat[i + self.cols] != 0]
            else:
                moves = empty
            cell = moves[rng.randrange(len(moves))]
            flat[cell] = player
            empty.remove(cell)
            if self.is_win_for_mover(flat, cell):
                return float(player)
            player = -player
        return 0.0

    def symmetries(self, board: np.ndarray, pi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.gravity:  # only the left-right mirror keeps gravity
            return [(board, pi), (board[:, ::-1].copy(), pi[::-1].copy())]
        out = []
        square = self.rows == self.cols
        pi_board = pi.reshape(self.rows, self.cols)
        for k in range(4 if square else 1):
            b, p = np.rot90(board, k), np.rot90(pi_board, k)
            out.append((b.copy(), p.reshape(-1).copy()))
            out.append((np.fliplr(b).copy(), np.fliplr(p).reshape(-1).copy()))
        if not square:
            out.append((np.flipud(board).copy(), np.flipud(pi_board).reshape(-1).copy()))
        return out

    def render(self, board: np.ndarray) -> str:
        # Canonical +1 is the player to move; turn it into absolute X (first) / O (second).
        absolute = board if self.first_to_move(board) else -board
        symbol = {1: "X", -1: "O", 0: "."}
        lines = []
        if self.gravity:
            lines.append(" ".join(str(c + 1) for c in range(self.cols)))
            lines += [" ".join(symbol[int(v)] for v in row) for row in absolute]
        else:
            width = len(str(self.rows * self.cols))
            for r, row in enumerate(absolute):
                lines.append(" ".join(symbol[int(v)].rjust(width) if v else str(r * self.cols + c + 1).rjust(width)
                                      for c, v in enumerate(row)))
        return "\n".join(lines)

    def parse_move(self, text: str) -> int | None:
        text = text.strip()
        if not text.isdigit():
            return None
        action = int(text) - 1
        return action if 0 <= action < self.action_size else None


class TicTacToe(LineGame):
    def __init__(self):
        super().__init__("tictactoe", 3, 3, 3)


class Gomoku(LineGame):
    """Free-style Gomoku: five (or more) in a row on a 9×9 board."""

    def __init__(self, size: int = 9):
        super().__init__("gomoku", size, size, 5)


class ConnectFour(LineGame):
    """Connect Four, 6 rows × 7 columns; rollouts use bitboards (7 bits per column) for speed."""

    def __init__(self):
        super().__init__("connect4", 6, 7, 4, gravity=True)

    @staticmethod
    def _four(bits: int) -> bool:
        # Bit (col*7 + row_from_bottom); shifts 1 / 7 / 6 / 8 walk vertically, horizontally and diagonally.
        for shift in (1, 7, 6, 8):
            m = bits & (bits >> shift)
            if m & (m >> (2 * shift)):
                return True
        return False

    def rollout(self, board: np.ndarray, rng: random.Random) -> float:
        mine = theirs = 0
        heights = [0] * self.cols
        for c in range(self.cols):
            column = board[::-1, c].tolist()  # bottom to top
            for r, v in enumerate(column):
                if v == 0:
                    break
                if v == 1:
                    mine |= 1 << (c * 7 + r)
                else:
                    theirs |= 1 << (c * 7 + r)
                heights[c] = r + 1
        player = 1
        while True:
            moves = [c for c in range(self.cols) if heights[c] < self.rows]
            if not moves:
                return 0.0
            c = moves[rng.randrange(len(moves))]
            bit = 1 << (c * 7 + heights[c])
            heights[c] += 1
            if player == 1:
                mine |= bit
                if self._four(mine):
                    return 1.0
            else:
                theirs |= bit
                if self._four(theirs):
                    return -1.0
            player = -player


GAMES = {"tictactoe": TicTacToe, "connect4": ConnectFour, "gomoku": Gomoku}


def make_game(name: str) -> Game:
    return GAMES[name]()
