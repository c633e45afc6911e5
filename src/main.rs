fn main() {
    // Must stay first: the RUN executor re-executes this binary as its helper.
    rbuild::exec::helper_main_if_requested();
}
