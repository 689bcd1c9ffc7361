use clap::Parser;
#[derive(Parser)]
#[command(name = "switchboard")]
enum Tools { Pub(switchboard_client::cli::PubArgs), Sub(switchboard_client::cli::SubArgs), Req(switchboard_client::cli::ReqArgs) }
fn main() { let _ = Tools::parse(); }
