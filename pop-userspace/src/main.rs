fn main() -> std::process::ExitCode {
    pop_userspace::cli::main()
}
