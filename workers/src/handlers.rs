//! Which handler runs each job type.

use std::future::Future;
use std::pin::Pin;

use muster_jobs::{DeploymentJob, NotificationJob, ReportJob};

use crate::failure::JobFailure;
use crate::queue::{Attempt, Handler};
use crate::{Runtime, deployment, notification, report};

impl Handler for DeploymentJob {
    fn attempt<'a>(
        rt: &'a Runtime,
        job: &'a Self,
        book: &'a mut Attempt,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobFailure>> + Send + 'a>> {
        Box::pin(deployment::run_deployment(rt, job, book))
    }
}

impl Handler for NotificationJob {
    fn attempt<'a>(
        rt: &'a Runtime,
        job: &'a Self,
        book: &'a mut Attempt,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobFailure>> + Send + 'a>> {
        Box::pin(notification::attempt_delivery(rt, job, book))
    }
}

impl Handler for ReportJob {
    fn attempt<'a>(
        rt: &'a Runtime,
        job: &'a Self,
        book: &'a mut Attempt,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobFailure>> + Send + 'a>> {
        Box::pin(report::build_report(rt, job, book))
    }
}
