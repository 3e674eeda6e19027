//! The intercepted calls, one module per family. Each export is a few lines:
//! untracked fds go straight to libc; tracked ones go to the logic here.

mod connect;
mod fd;
mod poll;
mod read;
mod sockopt;
mod write;
