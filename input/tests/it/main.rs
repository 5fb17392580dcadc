//! Input against real parts: the predictor over the motion corpus, and injection into a real X
//! server (Xvfb) observed by a real X client window.

mod predict;
mod uinput;
mod xtest;
