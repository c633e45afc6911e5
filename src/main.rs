fn main() {
    // Must run before anything else: the RUN helper re-executes this binary and takes over here.
    rbuild::exec::helper_main_if_requested();
    std::process::exit(rbuild::cli::main());
}
