//! The fault matrix: every failpoint × abort / error / stall.
